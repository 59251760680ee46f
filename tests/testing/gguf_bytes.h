// tests/testing/gguf_bytes.h
// GGUF files built byte by byte for the parser's tests and the fuzz seeds: a valid file of any
// metadata and tensors, whose fields a test can then corrupt at known offsets. (The files a model
// is served from in the golden tests are written by the gguf package itself.) Test-only;
// thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe::testing {

class GgufBytes {
 public:
  // Metadata values of each GGUF type (ids as the format numbers them).
  GgufBytes& U32(const std::string& key, uint32_t v);
  GgufBytes& I32(const std::string& key, int32_t v);
  GgufBytes& U64(const std::string& key, uint64_t v);
  GgufBytes& F32(const std::string& key, float v);
  GgufBytes& Bool(const std::string& key, bool v);
  GgufBytes& String(const std::string& key, const std::string& v);
  GgufBytes& U32Array(const std::string& key, const std::vector<uint32_t>& v);
  GgufBytes& StringArray(const std::string& key, const std::vector<std::string>& v);
  // A tensor of ggml type `type` with dims `ne` (ggml order: row length first) and its bytes.
  GgufBytes& Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                    std::vector<uint8_t> bytes);

  // The file: header (version 3), metadata, tensor infos, padding to `alignment`, data (each
  // tensor aligned). Offsets of fields a test may patch are recorded below.
  std::vector<uint8_t> Build(uint32_t alignment = 32);

  // After Build: where each tensor info's offset field and its data start in the file.
  std::vector<size_t> tensor_offset_fields, tensor_data_starts;
  size_t data_start = 0;

 private:
  void Key(const std::string& key, uint32_t type);
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  struct Info {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::vector<uint8_t> bytes;
  };
  std::vector<Info> tensors_;
};

// A tiny served model as GGUF bytes: architecture `arch` (qwen3moe by default), `layers` MoE
// layers of `experts` experts of width `inter` over `hidden`, an F32 router and Q8_0 experts
// quantized by our quantizer from seeded N(0, 1/k) values; `expert_type` may name another ggml
// type id for the expert tensors (their bytes then random). With `q8_0_gate` the router's gate
// is Q8_0 too (our quantizer on the same values), as a re-quantized file may bring it.
std::vector<uint8_t> TinyGgufModel(const std::string& arch = "qwen3moe", int hidden = 64,
                                   int inter = 32, int experts = 4, int layers = 1,
                                   uint32_t expert_type = 8, bool q8_0_gate = false);

// Writes `bytes` to `path`.
void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace moe::testing
