// experts/model_config.h
// The parts of a Hugging Face config.json that moe-serve needs to serve a model's MoE layers.
// Only the Mixtral family is understood for now; other families are refused by name.
// A plain value type; thread-compatible.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::experts {

struct ModelConfig {
  std::string model_type = "mixtral";
  int hidden_size = 0;
  int intermediate_size = 0;  // per expert
  int num_experts = 0;        // num_local_experts
  int top_k = 0;              // num_experts_per_tok
  int num_layers = 0;         // num_hidden_layers
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";

  // Parses config.json text. INVALID_ARGUMENT naming the field when a field is missing, of the
  // wrong type or out of range, or when model_type / hidden_act is one we do not serve.
  static absl::StatusOr<ModelConfig> Parse(absl::string_view json_text);
  // Reads and parses `path`; NOT_FOUND if it cannot be read.
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);
  // config.json text in the Hugging Face layout (the fields above plus architectures).
  std::string ToJson() const;
};

}  // namespace moe::experts
