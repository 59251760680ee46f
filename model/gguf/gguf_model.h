// model/gguf/gguf_model.h
// A GGUF model — one file, or the first file of a split set (`…-00001-of-0000N.gguf`, every
// shard's header read at open, its tensor bytes only when asked for) — as the rest of moe-serve
// sees a checkpoint: a ModelConfig translated from the architecture's metadata with llama.cpp's
// semantics (qwen2moe, qwen3moe, llama with experts (Mixtral), deepseek2 (DeepSeek-V2/V3/R1,
// Kimi-K2), glm4moe, gpt-oss), whose tensor names are GGUF's, and tensors found by those names, a
// routed expert as the slice `<stacked tensor>#<expert>` of its layer's `ffn_{gate,up,down}_exps`.
// Used by Checkpoint for `.gguf` paths. Immutable after Open; safe to share across threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/formats/weight_format.h"
#include "model/gguf/gguf_file.h"
#include "model/model_config.h"

namespace moe::model {

// Our resident format of a quantized ggml type (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, IQ4_XS, MXFP4), or
// nullptr (the float types, and quantized types we do not serve).
const WeightFormat* FormatOfGgmlType(const GgmlType& type);
// The GGUF architectures served, for messages and docs.
std::vector<std::string> ServedGgufArchitectures();

class GgufModel {
 public:
  // Opens `path` (and its sibling shards) and translates its metadata. NOT_FOUND for a missing
  // file or shard; DATA_LOSS for a malformed file (gguf_file.h); INVALID_ARGUMENT naming the
  // architecture and the served list for one we do not serve, or naming a metadata key that is
  // missing or of the wrong type.
  static absl::StatusOr<std::unique_ptr<GgufModel>> Open(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const std::vector<std::shared_ptr<const GgufFile>>& files() const { return files_; }

  // A tensor, or one expert's slice of a stacked one, by the names config().names make.
  struct View {
    std::shared_ptr<const GgufFile> file;  // the shard holding it (keeps the bytes mapped)
    const GgufTensor* tensor = nullptr;
    const uint8_t* bytes = nullptr;  // the view's first byte (the expert's slice)
    std::vector<int64_t> shape;      // row-major, without the expert dimension for a slice
  };
  // NOT_FOUND naming the tensor if no shard holds it; INVALID_ARGUMENT for an expert index past
  // the stack.
  absl::StatusOr<View> Find(const std::string& name) const;

 private:
  GgufModel() = default;
  std::vector<std::shared_ptr<const GgufFile>> files_;
  ModelConfig config_;
};

}  // namespace moe::model
