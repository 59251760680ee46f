// tests/fuzz/gguf_fuzz.cc
// A GGUF file of arbitrary bytes: the parser (header, metadata, tensor infos, byte ranges), then,
// where it accepts the file, the model translation (architecture, config) through an in-memory file
// (memfd), and the first row of every tensor of a served quantized type dequantized.
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "model/gguf/gguf_model.h"
#include "model/quantized_matrix.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = moe::model::GgufFile::Parse(data, size, "fuzz.gguf");
  if (!parsed.ok()) return 0;
  for (const auto& [name, t] : (*parsed)->tensors()) {
    const moe::model::WeightFormat* format = moe::model::FormatOfGgmlType(*t.type);
    if (format == nullptr || t.ne[0] % format->block != 0) continue;
    auto row = moe::model::QuantizedMatrix::FromBytes(*format, 1, t.ne[0], (*parsed)->Data(t));
    if (!row.ok()) continue;
    std::vector<float> values(static_cast<size_t>(t.ne[0]));
    row->DequantizeRow(0, values.data());
  }
  const int fd = memfd_create("gguf-fuzz", 0);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  auto model = moe::model::GgufModel::Open("/proc/self/fd/" + std::to_string(fd));
  if (model.ok()) (void)(*model)->Find("blk.0.ffn_gate_exps.weight#1");
  close(fd);
  return 0;
}
