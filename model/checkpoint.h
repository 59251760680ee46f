// model/checkpoint.h
// A Hugging Face checkpoint folder: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Shards are mapped lazily, on the first request for one of their
// tensors, so a worker that hosts two experts touches only the files (and pages) it needs.
// Or a GGUF file (a path ending in .gguf, or the first of a split set): its config translated
// from the metadata and its tensors under GGUF's names (model/gguf/gguf_model.h); quantized
// tensors are read with GetStoredQuantized (kept as stored) or GetWeight (dequantized to f32).
// Thread-safe: Get may be called concurrently.
#pragma once

#include <optional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model/gguf/gguf_model.h"
#include "model/int4_checkpoint.h"
#include "model/model_config.h"
#include "model/quantized_matrix.h"
#include "model/safetensors_reader.h"
#include "model/tensor.h"

namespace moe::model {

// The weight_map of a model.safetensors.index.json (`path` names it in errors): tensor name ->
// shard file name. DATA_LOSS if it is not JSON, has no object weight_map, or maps a tensor to
// something other than a file name in the folder. Used by Checkpoint::Open; fuzzed.
absl::StatusOr<std::map<std::string, std::string>> ParseShardIndex(absl::string_view json_text, absl::string_view path);

class Checkpoint {
 public:
  // Reads config.json and the shard index (or finds model.safetensors). NOT_FOUND if the folder,
  // config.json or every weights file is missing; INVALID_ARGUMENT/DATA_LOSS for malformed
  // config or index, with the file named. A `.gguf` path opens the GGUF model (gguf_model.h's
  // errors).
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }

  // A borrowed view of tensor `name` (NOT_FOUND if no shard holds it).
  absl::StatusOr<Tensor> Get(const std::string& name) const;
  // Like Get, and INVALID_ARGUMENT naming the tensor if its shape is not `shape`.
  absl::StatusOr<Tensor> GetWithShape(const std::string& name,
                                      const std::vector<int64_t>& shape) const;
  // An expert/MLP weight of `shape`: GetWithShape, or, for an F8_E4M3 weight of a checkpoint with
  // an FP8 quantization_config, the weight dequantized to bf16 with its `<name>_scale_inv` (an
  // owned tensor; model/fp8.h); a quantized GGUF tensor or AWQ/GPTQ linear dequantized exactly
  // to f32.
  absl::StatusOr<Tensor> GetWeight(const std::string& name, const std::vector<int64_t>& shape) const;
  // The FP8 weight `name` of `shape` as stored — its e4m3 codes and its `<name>_scale_inv` grid —
  // or nullopt for a weight that is not FP8 block-scaled; an AWQ/GPTQ linear (`<module>.qweight`,
  // `.qzeros`, `.scales`) as int4 blocks (model/int4_checkpoint.h); a compressed-tensors linear as
  // int4 blocks, int8 or fp8 rows under its scales (model/compressed_tensors.h); a GGUF tensor of a served quantized type
  // as its blocks (nullopt for a float type). INVALID_ARGUMENT naming the tensor for a wrong shape
  // or scale grid, or a GGUF type we do not serve; NOT_FOUND if absent.
  absl::StatusOr<std::optional<QuantizedMatrix>> GetStoredQuantized(const std::string& name,
                                                                    const std::vector<int64_t>& shape) const;
  // The bytes of tensor `name` of any dtype, with its safetensors dtype string and shape
  // (quantized weights). NOT_FOUND if absent.
  absl::StatusOr<const uint8_t*> GetRaw(const std::string& name, std::string* dtype,
                                        std::vector<int64_t>* shape) const;
  // Shard files mapped so far (for tests of lazy loading).
  std::vector<std::string> OpenedFiles() const;

 private:
  Checkpoint() = default;
  absl::StatusOr<std::shared_ptr<const SafetensorsFile>> File(const std::string& file) const;
  absl::StatusOr<std::shared_ptr<const SafetensorsFile>> FileOf(const std::string& name) const;

  // An AWQ/GPTQ linear `<module>.weight` as int4 blocks from its qweight/qzeros/scales, or a
  // compressed-tensors one as stored (model/compressed_tensors.h), or nullopt when the module is
  // not quantized (modules_to_not_convert, ignore).
  absl::StatusOr<std::optional<QuantizedMatrix>> Int4Stored(const std::string& name,
                                                            const std::vector<int64_t>& shape) const;
  // Tensor `name`'s dtype, shape and bytes; bytes null when absent and not `required`.
  absl::StatusOr<PackedTensor> Raw(const std::string& name, bool required) const;
  absl::StatusOr<Tensor> GgufGet(const std::string& name) const;
  absl::StatusOr<Tensor> GgufWeight(const std::string& name, const std::vector<int64_t>& shape) const;
  absl::StatusOr<std::optional<QuantizedMatrix>> GgufStoredQuantized(const std::string& name,
                                                                     const std::vector<int64_t>& shape) const;

  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<const GgufModel> gguf_;  // set for a GGUF model
  std::map<std::string, std::string> weight_map_;  // tensor name -> shard file name
  std::string single_file_;                        // set when there is no index
  mutable absl::Mutex mu_;
  mutable std::map<std::string, std::shared_ptr<const SafetensorsFile>> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe::model
