// model/formats/q5_k.cc — llama.cpp's Q5_K (block_q5_K): 256 values in 176 bytes: f16 d, f16 dmin,
// the 12 bytes of 6-bit scales and mins (k_quants.h), 32 bytes qh of high bits (bit j of byte l is
// element l's fifth bit in sub-block j), then 128 bytes of low nibbles ordered as Q4_K's.
// x = (d·scale)·q − (dmin·min). Read only (GGUF files bring it).
#include <cstring>

#include "model/dtype.h"
#include "model/formats/k_quants.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  uint16_t d_bits, m_bits;
  std::memcpy(&d_bits, block, 2);
  std::memcpy(&m_bits, block + 2, 2);
  const float d = F16ToF32(d_bits) * scale, dmin = F16ToF32(m_bits) * scale;
  const uint8_t* scales = block + 4;
  const uint8_t* qh = block + 16;
  const uint8_t* qs = block + 48;
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    kquants::UnpackScaleMin(j, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    const uint8_t* q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32 && 32 * j + l < count; ++l) {
      const int code = ((q[l] >> shift) & 15) | (((qh[l] >> j) & 1) << 4);
      out[32 * j + l] = d1 * static_cast<float>(code) - m1;
    }
  }
}

}  // namespace

const WeightFormat kQ5_K = {"q5_k", kquants::kSuperBlock, 176, false, Dequantize, nullptr};

}  // namespace moe::model
