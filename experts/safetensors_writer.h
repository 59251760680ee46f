// experts/safetensors_writer.h
// Writes tensors into a .safetensors file in the reference layout (8-byte little-endian header
// length, JSON header padded with spaces to 8 bytes, data in insertion order). Used by the
// checkpoint generator and tests. Not thread-safe; use one writer per file.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "experts/tensor.h"

namespace moe::experts {

class SafetensorsWriter {
 public:
  // Queues `tensor` under `name`; the tensor's storage must stay valid until Write returns.
  void Add(std::string name, Tensor tensor);
  size_t num_bytes() const;
  // Writes the file. INTERNAL with the path and errno text if writing fails.
  absl::Status Write(const std::string& path,
                     const std::map<std::string, std::string>& metadata = {}) const;

 private:
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

}  // namespace moe::experts
