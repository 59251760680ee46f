// experts/model_config.cc
#include "experts/model_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace moe::experts {
namespace {

absl::Status ReadPositiveInt(const nlohmann::json& j, const char* field, int* out) {
  if (!j.contains(field)) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: missing field '", field, "'"));
  }
  const auto& v = j[field];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: field '", field, "' must be a positive integer, got ", v.dump()));
  }
  *out = static_cast<int>(v.get<int64_t>());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::Parse(absl::string_view json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text.begin(), json_text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");
  ModelConfig c;
  if (!j.contains("model_type") || !j["model_type"].is_string()) {
    return absl::InvalidArgumentError("config.json: missing string field 'model_type'");
  }
  c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "mixtral") {
    return absl::InvalidArgumentError(absl::StrCat("config.json: field 'model_type' is '",
                                                   c.model_type, "'; supported: mixtral"));
  }
  for (auto [field, out] : {std::pair{"hidden_size", &c.hidden_size},
                            std::pair{"intermediate_size", &c.intermediate_size},
                            std::pair{"num_local_experts", &c.num_experts},
                            std::pair{"num_experts_per_tok", &c.top_k},
                            std::pair{"num_hidden_layers", &c.num_layers}}) {
    if (absl::Status s = ReadPositiveInt(j, field, out); !s.ok()) return s;
  }
  if (c.top_k > c.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: field 'num_experts_per_tok' (",
                                                   c.top_k, ") exceeds num_local_experts (",
                                                   c.num_experts, ")"));
  }
  if (j.contains("hidden_act")) {
    if (!j["hidden_act"].is_string()) {
      return absl::InvalidArgumentError("config.json: field 'hidden_act' is not a string");
    }
    c.hidden_act = j["hidden_act"].get<std::string>();
  }
  if (c.hidden_act != "silu") {
    return absl::InvalidArgumentError(absl::StrCat("config.json: field 'hidden_act' is '",
                                                   c.hidden_act, "'; supported: silu"));
  }
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) {
    c.torch_dtype = j["torch_dtype"].get<std::string>();
  }
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelConfig> config = Parse(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

std::string ModelConfig::ToJson() const {
  nlohmann::ordered_json j;
  j["architectures"] = {"MixtralForCausalLM"};
  j["model_type"] = model_type;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_local_experts"] = num_experts;
  j["num_experts_per_tok"] = top_k;
  j["num_hidden_layers"] = num_layers;
  j["hidden_act"] = hidden_act;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

}  // namespace moe::experts
