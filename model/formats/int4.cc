// model/formats/int4.cc — group-wise asymmetric int4, the layout AWQ, GPTQ and compressed-tensors
// `pack-quantized` checkpoints reduce to: 128 values a group in 67 bytes: f16 scale s, a u8 zero
// point z (≤ 16: GPTQ's zeros are stored minus one), then 64 bytes of codes, element i < 64 the low
// nibble of byte i and element i + 64 its high nibble. x = (q − z)·s — exact in f32 (an f16 times
// an integer below 16 in magnitude). 67 bytes against AWQ's 66.5 per group stored (4-bit zeros):
// resident ÷ stored 1.008. The quantizer maps each group's [min(x, 0), max(x, 0)] onto the 16
// codes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/dtype.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  uint16_t s_bits;
  std::memcpy(&s_bits, block, 2);
  const float s = F16ToF32(s_bits) * scale;
  const int z = block[2];
  const uint8_t* qs = block + 3;
  for (int i = 0; i < count; ++i) {
    const int q = i < 64 ? (qs[i] & 15) : (qs[i - 64] >> 4);
    out[i] = static_cast<float>(q - z) * s;
  }
}

void Quantize(const float* x, uint8_t* block) {
  float lo = 0, hi = 0;
  for (int i = 0; i < 128; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const uint16_t s_bits = F32ToF16((hi - lo) / 15.0f);
  const float s = F16ToF32(s_bits);
  const int z = s > 0 ? std::clamp(static_cast<int>(std::nearbyint(-lo / s)), 0, 15) : 0;
  std::memcpy(block, &s_bits, 2);
  block[2] = static_cast<uint8_t>(z);
  uint8_t* qs = block + 3;
  const auto code = [&](float v) {
    return s > 0 ? std::clamp(static_cast<int>(std::nearbyint(v / s)) + z, 0, 15) : z;
  };
  for (int i = 0; i < 64; ++i) qs[i] = static_cast<uint8_t>(code(x[i]) | (code(x[i + 64]) << 4));
}

}  // namespace

const WeightFormat kInt4 = {"int4", 128, 67, false, Dequantize, Quantize};

}  // namespace moe::model
