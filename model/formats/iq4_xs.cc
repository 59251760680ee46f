// model/formats/iq4_xs.cc — llama.cpp's IQ4_XS (block_iq4_xs): 256 values in 136 bytes: f16 d, a
// u16 of the scales' high 2 bits, 4 bytes of their low nibbles, then 128 bytes of 4-bit indices
// into the non-linear table kvalues_iq4nl. Sub-block j (32 values) has the 6-bit scale
// ls = (low nibble j) | (high bits j) << 4 and its values at bytes [16j, 16j + 16): element l < 16
// the low nibble of byte l, element l + 16 its high nibble. x = (d·(ls − 32))·table[q]. Read only.
#include <cstring>

#include "model/dtype.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

constexpr int8_t kTable[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  uint16_t d_bits, high;
  std::memcpy(&d_bits, block, 2);
  std::memcpy(&high, block + 2, 2);
  const float d = F16ToF32(d_bits) * scale;
  const uint8_t* low = block + 4;
  const uint8_t* qs = block + 8;
  for (int j = 0; j < 8; ++j) {
    const int ls = ((low[j / 2] >> (4 * (j % 2))) & 15) | (((high >> (2 * j)) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int l = 0; l < 32 && 32 * j + l < count; ++l) {
      const uint8_t byte = qs[16 * j + l % 16];
      out[32 * j + l] = dl * static_cast<float>(kTable[l < 16 ? byte & 15 : byte >> 4]);
    }
  }
}

}  // namespace

const WeightFormat kIq4Xs = {"iq4_xs", 256, 136, false, Dequantize, nullptr};

}  // namespace moe::model
