// model/formats/q6_k.cc — llama.cpp's Q6_K (block_q6_K): 256 values in 210 bytes: 128 bytes ql of
// low nibbles, 64 bytes qh of 2-bit highs, 16 int8 scales (one per 16 values), then f16 d.
// In each half h (128 values; ql + 64h, qh + 32h, scales + 8h), element 32c + l (c < 4, l < 32)
// has low bits ql[l + 32·(c % 2)] >> 4·(c / 2), high bits qh[l] >> 2c, and scale scales[2c + l /
// 16]; x = (d·scale)·(q − 32). The quantizer fits a signed scale per 16 (kquants::FitSymmetric),
// stores them as int8 under d = −(largest) / 128, and recodes the values with them
// (quantize_row_q6_K_ref's scheme).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/dtype.h"
#include "model/formats/k_quants.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  uint16_t d_bits;
  std::memcpy(&d_bits, block + 208, 2);
  const float d = F16ToF32(d_bits) * scale;
  const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
  for (int i = 0; i < count; ++i) {
    const int h = i / 128, c = (i % 128) / 32, l = i % 32;
    const uint8_t* ql = block + 64 * h;
    const uint8_t* qh = block + 128 + 32 * h;
    const int low = (ql[l + 32 * (c % 2)] >> (4 * (c / 2))) & 15;
    const int high = (qh[l] >> (2 * c)) & 3;
    const float d1 = d * static_cast<float>(scales[8 * h + 2 * c + l / 16]);
    out[i] = d1 * static_cast<float>((low | (high << 4)) - 32);
  }
}

void Quantize(const float* x, uint8_t* block) {
  float scales[16];
  float max_scale = 0, max_abs = 0;
  for (int s = 0; s < 16; ++s) {
    scales[s] = kquants::FitSymmetric(x + 16 * s, 16, 32);
    if (std::fabs(scales[s]) > max_abs) {
      max_abs = std::fabs(scales[s]);
      max_scale = scales[s];
    }
  }
  std::memset(block, 0, 210);
  auto* stored = reinterpret_cast<int8_t*>(block + 192);
  uint16_t d_bits = F32ToF16(0.0f);
  if (max_abs > 0) {
    const float inv = -128.0f / max_scale;
    d_bits = F32ToF16(1.0f / inv);
    for (int s = 0; s < 16; ++s)
      stored[s] = static_cast<int8_t>(std::clamp(kquants::NearestInt(inv * scales[s]), -128, 127));
  }
  std::memcpy(block + 208, &d_bits, 2);
  const float d = F16ToF32(d_bits);
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, c = (i % 128) / 32, l = i % 32;
    const float d1 = d * static_cast<float>(stored[8 * h + 2 * c + l / 16]);
    const int q = d1 == 0 ? 32 : std::clamp(kquants::NearestInt(x[i] / d1), -32, 31) + 32;
    block[64 * h + l + 32 * (c % 2)] |= static_cast<uint8_t>((q & 15) << (4 * (c / 2)));
    block[128 + 32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * c));
  }
}

}  // namespace

const WeightFormat kQ6_K = {"q6_k", kquants::kSuperBlock, 210, false, Dequantize, Quantize};

}  // namespace moe::model
