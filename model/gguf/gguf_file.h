// model/gguf/gguf_file.h
// One GGUF file (llama.cpp's model container, versions 2 and 3): the header, every metadata
// key/value and every tensor's name, ggml type, dimensions and byte range, validated once, over a
// read-only mapping of the file so that a worker touches only the pages of the tensors it reads.
// Used by model/gguf/gguf_model.h (and so by Checkpoint for `.gguf` paths); fuzzed
// (tests/fuzz/gguf_fuzz.cc). Immutable after Open; safe to share across threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace moe::model {

// A ggml tensor type: its GGUF id, name, values a block and bytes a block.
struct GgmlType {
  uint32_t id;
  const char* name;  // as llama.cpp prints it: "Q4_K", "BF16", …
  int block;
  int block_bytes;
};

// The type with GGUF id `id`, or nullptr for an id ggml does not define (or that we cannot size).
const GgmlType* FindGgmlType(uint32_t id);

struct GgufTensor {
  std::string name;
  const GgmlType* type = nullptr;
  std::vector<int64_t> ne;  // ggml's order: ne[0] is the row length (contiguous), then rows, …
  uint64_t offset = 0;      // from the start of the data section
  uint64_t bytes = 0;
  // The shape in row-major (PyTorch/safetensors) order: ne reversed.
  std::vector<int64_t> Shape() const { return {ne.rbegin(), ne.rend()}; }
};

class GgufFile {
 public:
  // Maps and validates `path`. NOT_FOUND if it cannot be opened; DATA_LOSS naming the file (and the
  // key or tensor) if anything is wrong: not GGUF (magic), a version other than 2 or 3, truncated
  // anywhere, counts or lengths past the file, a value type, tensor type or dimension count that
  // does not exist, dimensions whose product overflows or whose rows are not whole blocks, an
  // alignment that is not a power of two, a tensor offset that is misaligned, past the end of the
  // file or overlapping another tensor, a duplicated key or tensor name.
  static absl::StatusOr<std::shared_ptr<const GgufFile>> Open(const std::string& path);
  // The same over bytes already in memory (which must outlive the result); for tests and fuzzing.
  static absl::StatusOr<std::shared_ptr<const GgufFile>> Parse(const uint8_t* data, size_t size,
                                                               const std::string& path);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  // Every key/value: integers as JSON integers, floats as numbers, bools, strings, arrays.
  const nlohmann::json& metadata() const { return metadata_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* Find(absl::string_view name) const;
  // The bytes of `t` (a tensor of this file); valid while this file lives.
  const uint8_t* Data(const GgufTensor& t) const { return data_ + t.offset; }

  // Typed metadata: INVALID_ARGUMENT naming the key and file if present with another type;
  // `fallback` (or NOT_FOUND without one) if absent.
  absl::StatusOr<int64_t> Int(const std::string& key) const;
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t fallback) const;
  absl::StatusOr<double> Float(const std::string& key, double fallback) const;
  absl::StatusOr<bool> Bool(const std::string& key, bool fallback) const;
  absl::StatusOr<std::string> String(const std::string& key) const;

 private:
  GgufFile() = default;
  absl::Status ParseAll();

  std::string path_;
  const uint8_t* map_ = nullptr;  // the whole file
  size_t size_ = 0;
  bool owns_map_ = false;
  const uint8_t* data_ = nullptr;  // the data section
  uint32_t version_ = 0;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::map<std::string, GgufTensor> tensors_;
};

}  // namespace moe::model
