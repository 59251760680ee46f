// model/safetensors_reader.h
// Reads one .safetensors file: maps it read-only, validates the 8-byte header length, the JSON
// header and every tensor's dtype, shape and byte range, then hands out borrowed views that keep
// the mapping alive. Used by Checkpoint. Immutable after Open; safe to share across threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tensor.h"

namespace moe::model {

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  struct Entry {
    std::string dtype;  // as written in the header, e.g. "BF16" or "F8_E4M3"
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // byte offsets into the data section
    uint64_t end = 0;
  };

  // Maps and validates `path`. Errors (the message names the file, and the tensor if any):
  // NOT_FOUND if the file cannot be opened; DATA_LOSS if it is truncated, the header is longer
  // than the file, the header is not valid JSON of the safetensors form, a dtype is unknown, or
  // byte ranges are out of bounds, overlap or disagree with dtype × shape.
  static absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool Contains(absl::string_view name) const;

  // A borrowed view of tensor `name` (an owned copy if its bytes are not aligned to its element
  // size in the mapping). NOT_FOUND if absent; INVALID_ARGUMENT if its dtype is one moe-serve
  // cannot serve (anything but F32/BF16/F16, e.g. FP8), naming the tensor.
  absl::StatusOr<Tensor> Get(absl::string_view name) const;
  // The bytes of tensor `name` whatever its dtype (for quantized weights: model/fp8.h), with its
  // entry. NOT_FOUND if absent. The bytes live as long as this file.
  absl::StatusOr<const uint8_t*> RawBytes(absl::string_view name, Entry* entry) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  size_t data_size_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Byte size of one element of a safetensors dtype; 0 if the name is not a safetensors dtype.
size_t SafetensorsDTypeSize(absl::string_view dtype);

}  // namespace moe::model
