// model/formats/q8_0.cc — llama.cpp's Q8_0 (ggml-common.h block_q8_0): 32 values a block, an f16
// scale d then 32 int8 codes; x = d·q. The quantizer is quantize_row_q8_0_ref's: d = amax / 127,
// q = round(x / d).
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
  const auto* q = reinterpret_cast<const int8_t*>(block + 2);
  for (int i = 0; i < count; ++i) out[i] = d * static_cast<float>(q[i]);
}

void Quantize(const float* values, uint8_t* block) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(values[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t d_bits = F32ToF16(d);
  std::memcpy(block, &d_bits, 2);
  auto* q = reinterpret_cast<int8_t*>(block + 2);
  for (int i = 0; i < 32; ++i) q[i] = static_cast<int8_t>(std::roundf(values[i] * id));
}

}  // namespace

const WeightFormat kQ8_0 = {"q8_0", 32, 34, false, Dequantize, Quantize};

}  // namespace moe::model
