// model/safetensors_writer.h
// Writes tensors into a .safetensors file in the reference layout (8-byte little-endian header
// length, JSON header padded with spaces to 8 bytes, data in insertion order). Used by the
// checkpoint generator and tests. Not thread-safe; use one writer per file.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/tensor.h"

namespace moe::model {

class SafetensorsWriter {
 public:
  // Queues `tensor` under `name`; the tensor's storage must stay valid until Write returns.
  void Add(std::string name, Tensor tensor);
  // Queues bytes of a dtype Tensor does not have (e.g. "F8_E4M3", "U8" for quantized weights).
  void AddRaw(std::string name, std::string dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  size_t num_bytes() const;
  // Writes the file. INTERNAL with the path and errno text if writing fails.
  absl::Status Write(const std::string& path,
                     const std::map<std::string, std::string>& metadata = {}) const;

 private:
  struct Entry {
    std::string name, dtype;
    std::vector<int64_t> shape;
    Tensor tensor;              // Add
    std::vector<uint8_t> raw;   // AddRaw
    const void* data() const { return raw.empty() ? tensor.raw_data() : raw.data(); }
    size_t bytes() const { return raw.empty() ? tensor.num_bytes() : raw.size(); }
  };
  std::vector<Entry> tensors_;
};

}  // namespace moe::model
