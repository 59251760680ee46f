// model/formats/q4_0.cc — llama.cpp's Q4_0 (ggml-common.h block_q4_0): 32 values a block, an f16
// scale d then 16 bytes; element i < 16 is the low nibble of byte i, element i + 16 its high
// nibble; x = d·(q − 8). The quantizer is quantize_row_q4_0_ref's: d = (the value of largest
// magnitude) / −8, q = min(15, ⌊x / d + 8.5⌋).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/dtype.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  uint16_t d_bits;
  std::memcpy(&d_bits, block, 2);
  const float d = F16ToF32(d_bits) * scale;
  const uint8_t* qs = block + 2;
  for (int i = 0; i < count; ++i) {
    const int q = i < 16 ? (qs[i] & 0x0f) : (qs[i - 16] >> 4);
    out[i] = d * static_cast<float>(q - 8);
  }
}

void Quantize(const float* values, uint8_t* block) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(values[i]) > amax) {
      amax = std::fabs(values[i]);
      max = values[i];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t d_bits = F32ToF16(d);
  std::memcpy(block, &d_bits, 2);
  uint8_t* qs = block + 2;
  for (int i = 0; i < 16; ++i) {
    const int lo = std::min(15, static_cast<int>(values[i] * id + 8.5f));
    const int hi = std::min(15, static_cast<int>(values[i + 16] * id + 8.5f));
    qs[i] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

}  // namespace

const WeightFormat kQ4_0 = {"q4_0", 32, 18, false, Dequantize, Quantize};

}  // namespace moe::model
