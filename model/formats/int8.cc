// model/formats/int8.cc — signed int8 codes, one byte a value, as compressed-tensors'
// `int-quantized` checkpoints (W8A8 int8, symmetric) store their weights; the scale (one per output
// channel, per tensor or per block: `weight_scale`) lives in the matrix's 2-D scale grid
// (model/quantized_matrix.h). Ragged like fp8_e4m3. x = q · scale in f32, as compressed-tensors'
// dequantization computes it. Read only (checkpoints bring it).
#include <cstdint>

#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

struct Table {
  float value[256];
  Table() {
    for (int c = 0; c < 256; ++c) value[c] = static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(c)));
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

const WeightFormat kInt8 = {"int8", 128, 128, true, Dequantize, nullptr, CodeValues};

}  // namespace moe::model
