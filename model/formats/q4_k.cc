// model/formats/q4_k.cc — llama.cpp's Q4_K (ggml-common.h block_q4_K): 256 values a super-block
// in 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for its eight sub-blocks of 32
// (k_quants.h), then 128 bytes of 4-bit codes: sub-block 2c is the low nibbles of bytes
// [32c, 32c + 32), sub-block 2c + 1 their high nibbles. x = (d·scale)·q − (dmin·min), in f32 in
// that order, as ggml's dequantize_row_q4_K and the gguf package compute it. The quantizer fits a
// scale and min per sub-block (kquants::FitScaleMin, weights |x| + rms, as quantize_row_q4_K_ref
// weighs them), quantizes them to 6 bits under d and dmin, and recodes the values with them.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/dtype.h"
#include "model/formats/k_quants.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

using kquants::kSuperBlock;

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  uint16_t d_bits, m_bits;
  std::memcpy(&d_bits, block, 2);
  std::memcpy(&m_bits, block + 2, 2);
  const float d = F16ToF32(d_bits) * scale, dmin = F16ToF32(m_bits) * scale;
  const uint8_t* scales = block + 4;
  const uint8_t* qs = block + 16;
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    kquants::UnpackScaleMin(j, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    const uint8_t* q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32 && 32 * j + l < count; ++l)
      out[32 * j + l] = d1 * static_cast<float>((q[l] >> shift) & 15) - m1;
  }
}

void Quantize(const float* x, uint8_t* block) {
  uint8_t codes[kSuperBlock];
  float scales[8], mins[8], weights[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* v = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += v[l] * v[l];
    const float rms = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = rms + std::fabs(v[l]);
    scales[j] = kquants::FitScaleMin(v, weights, 32, 15, codes + 32 * j, &mins[j]);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  const uint16_t d_bits = F32ToF16(max_scale / 63.0f), m_bits = F32ToF16(max_min / 63.0f);
  std::memcpy(block, &d_bits, 2);
  std::memcpy(block + 2, &m_bits, 2);
  uint8_t* packed = block + 4;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    kquants::PackScaleMin(j, std::min(63, kquants::NearestInt(inv_scale * scales[j])),
                          std::min(63, kquants::NearestInt(inv_min * mins[j])), packed);
  }
  const float d = F16ToF32(d_bits), dmin = F16ToF32(m_bits);
  for (int j = 0; j < 8; ++j) {  // recode under the scales as stored
    int sc, m;
    kquants::UnpackScaleMin(j, packed, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      codes[32 * j + l] = d1 == 0 ? 0
                                  : static_cast<uint8_t>(std::clamp(
                                        kquants::NearestInt((x[32 * j + l] + m1) / d1), 0, 15));
    }
  }
  uint8_t* qs = block + 16;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = static_cast<uint8_t>(codes[64 * c + l] | (codes[64 * c + 32 + l] << 4));
  }
}

}  // namespace

const WeightFormat kQ4_K = {"q4_k", kSuperBlock, 144, false, Dequantize, Quantize};

}  // namespace moe::model
