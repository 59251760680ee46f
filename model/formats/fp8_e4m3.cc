// model/formats/fp8_e4m3.cc — FP8 e4m3fn codes, one byte a value, as DeepSeek-V3/R1, Kimi-K2 and
// Qwen3-FP8 store their experts; the scale of each 128 × 128 block (`weight_scale_inv`) lives in
// the matrix's 2-D scale grid (model/quantized_matrix.h), not in the block: the format is
// "ragged" (one byte a value), so rows and grid blocks may have any width. x = e4m3(q) · scale in f32, as transformers'
// dequantization computes it. Read only (checkpoints bring it).
#include "model/fp8.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

struct Table {
  float value[256];
  Table() {
    for (int c = 0; c < 256; ++c) value[c] = E4m3ToF32(static_cast<uint8_t>(c));
  }
};

const float* CodeValues() {
  static const Table table;
  return table.value;
}

void Dequantize(const uint8_t* block, int count, float scale, float* out) {
  const float* value = CodeValues();
  for (int i = 0; i < count; ++i) out[i] = value[block[i]] * scale;
}

}  // namespace

const WeightFormat kFp8E4m3 = {"fp8_e4m3", 128, 128, true, Dequantize, nullptr, CodeValues};

}  // namespace moe::model
