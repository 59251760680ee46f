// model/formats/mxfp4_gguf.cc — MXFP4 as GGUF stores it (ggml-common.h block_mxfp4): 32 values in
// 17 bytes, an e8m0 exponent byte e then 16 bytes of e2m1 codes, element i < 16 the low nibble of
// byte i and element i + 16 its high nibble (gpt-oss's safetensors interleave them instead:
// mxfp4.cc). x = 2^(e − 128) · (2·e2m1(q)), as ggml computes it (e8m0 "half" times the doubled
// code table), so e = 0 gives 2^−128 and e = 255 gives 2^127. Read only (GGUF files bring it).
#include <cstring>

#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

constexpr int8_t kDoubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

float HalfScale(uint8_t e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  const float d = HalfScale(block[0]);
  const uint8_t* qs = block + 1;
  for (int i = 0; i < count; ++i) {
    const uint8_t byte = qs[i % 16];
    out[i] = d * static_cast<float>(kDoubled[i < 16 ? byte & 15 : byte >> 4]) * scale;
  }
}

}  // namespace

const WeightFormat kMxfp4Gguf = {"mxfp4_gguf", 32, 17, false, Dequantize, nullptr};

}  // namespace moe::model
