// model/formats/mxfp4.cc — OCP MXFP4 in gpt-oss's order: 32 values a block, an e8m0 exponent byte
// s (2^(s − 127)) then 16 bytes of e2m1 codes, element 2i the low nibble of byte i and 2i + 1 the
// high nibble (GGUF's MXFP4 orders the nibbles differently). 17 bytes for 32 values, as the
// checkpoint's `_blocks` and `_scales` hold them together. Read only (checkpoints bring it).
#include <cmath>

#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

constexpr float kE2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                             -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  const int exponent = static_cast<int>(block[0]) - 127;
  const uint8_t* qs = block + 1;
  for (int i = 0; i < count; ++i) {
    const uint8_t byte = qs[i / 2];
    out[i] = std::ldexp(kE2m1[i % 2 == 0 ? byte & 0x0f : byte >> 4], exponent) * scale;
  }
}

}  // namespace

const WeightFormat kMxfp4 = {"mxfp4", 32, 17, false, Dequantize, nullptr};

}  // namespace moe::model
