// experts/model_config.cc
#include "experts/model_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "experts/status_macros.h"
#include "nlohmann/json.hpp"

namespace moe::experts {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: field '", field, "' ", what));
}

absl::Status ReadInt(const Json& j, const char* field, bool required, int min, int* out) {
  if (!j.contains(field) || j[field].is_null()) {
    return required ? absl::InvalidArgumentError(absl::StrCat("config.json: missing field '", field, "'"))
                    : absl::OkStatus();
  }
  const Json& v = j[field];
  if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > (1 << 30)) {
    return FieldError(field, absl::StrCat("must be an integer >= ", min, ", got ", v.dump()));
  }
  *out = static_cast<int>(v.get<int64_t>());
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& j, const char* field, bool* out) {
  if (!j.contains(field) || j[field].is_null()) return absl::OkStatus();
  if (!j[field].is_boolean()) return FieldError(field, absl::StrCat("must be true or false, got ", j[field].dump()));
  *out = j[field].get<bool>();
  return absl::OkStatus();
}

absl::Status ReadFloat(const Json& j, const char* field, float* out) {
  if (!j.contains(field) || j[field].is_null()) return absl::OkStatus();
  if (!j[field].is_number() || j[field].get<double>() < 0) {
    return FieldError(field, absl::StrCat("must be a non-negative number, got ", j[field].dump()));
  }
  *out = j[field].get<float>();
  return absl::OkStatus();
}

absl::Status ReadString(const Json& j, const char* field, std::string* out) {
  if (!j.contains(field) || j[field].is_null()) return absl::OkStatus();
  if (!j[field].is_string()) return FieldError(field, absl::StrCat("must be a string, got ", j[field].dump()));
  *out = j[field].get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadIntList(const Json& j, const char* field, std::vector<int>* out) {
  if (!j.contains(field) || j[field].is_null()) return absl::OkStatus();
  if (!j[field].is_array()) return FieldError(field, "must be a list of layer indices");
  for (const Json& v : j[field]) {
    if (!v.is_number_integer()) return FieldError(field, "must be a list of layer indices");
    out->push_back(v.get<int>());
  }
  return absl::OkStatus();
}

absl::Status ParseFamilyFields(const Json& j, ModelConfig& c) {
  RETURN_IF_ERROR(ReadInt(j, "hidden_size", true, 1, &c.hidden_size));
  RETURN_IF_ERROR(ReadInt(j, "num_hidden_layers", true, 1, &c.num_layers));
  RETURN_IF_ERROR(ReadInt(j, "num_experts_per_tok", c.family != Family::kSwitch, 1, &c.top_k));
  switch (c.family) {
    case Family::kMixtral:
      RETURN_IF_ERROR(ReadInt(j, "num_local_experts", true, 1, &c.num_experts));
      RETURN_IF_ERROR(ReadInt(j, "intermediate_size", true, 1, &c.moe_intermediate_size));
      c.norm_topk_prob = true;  // Mixtral always renormalises
      break;
    case Family::kOlmoe:
      RETURN_IF_ERROR(ReadInt(j, "num_experts", true, 1, &c.num_experts));
      RETURN_IF_ERROR(ReadInt(j, "intermediate_size", true, 1, &c.moe_intermediate_size));
      c.norm_topk_prob = false;
      RETURN_IF_ERROR(ReadBool(j, "norm_topk_prob", &c.norm_topk_prob));
      break;
    case Family::kSwitch:
      RETURN_IF_ERROR(ReadInt(j, "num_experts", true, 1, &c.num_experts));
      RETURN_IF_ERROR(ReadInt(j, "intermediate_size", true, 1, &c.moe_intermediate_size));
      c.top_k = 1;
      c.norm_topk_prob = false;  // y = p_max · E(x)
      c.capacity_factor = 1.0f;
      RETURN_IF_ERROR(ReadFloat(j, "capacity_factor", &c.capacity_factor));
      break;
    case Family::kQwen2Moe:
    case Family::kQwen3Moe:
      RETURN_IF_ERROR(ReadInt(j, "num_experts", true, 1, &c.num_experts));
      RETURN_IF_ERROR(ReadInt(j, "moe_intermediate_size", true, 1, &c.moe_intermediate_size));
      RETURN_IF_ERROR(ReadInt(j, "intermediate_size", false, 0, &c.intermediate_size));
      c.norm_topk_prob = false;
      RETURN_IF_ERROR(ReadBool(j, "norm_topk_prob", &c.norm_topk_prob));
      RETURN_IF_ERROR(ReadInt(j, "decoder_sparse_step", false, 1, &c.decoder_sparse_step));
      RETURN_IF_ERROR(ReadIntList(j, "mlp_only_layers", &c.mlp_only_layers));
      if (c.family == Family::kQwen2Moe) {
        RETURN_IF_ERROR(ReadInt(j, "shared_expert_intermediate_size", false, 0, &c.shared_expert_intermediate_size));
      }
      break;
    case Family::kDeepseekV2:
    case Family::kDeepseekV3:
      RETURN_IF_ERROR(ReadInt(j, "n_routed_experts", true, 1, &c.num_experts));
      RETURN_IF_ERROR(ReadInt(j, "moe_intermediate_size", true, 1, &c.moe_intermediate_size));
      RETURN_IF_ERROR(ReadInt(j, "intermediate_size", false, 0, &c.intermediate_size));
      RETURN_IF_ERROR(ReadInt(j, "n_shared_experts", false, 0, &c.n_shared_experts));
      RETURN_IF_ERROR(ReadInt(j, "first_k_dense_replace", false, 0, &c.first_k_dense_replace));
      RETURN_IF_ERROR(ReadInt(j, "moe_layer_freq", false, 1, &c.moe_layer_freq));
      RETURN_IF_ERROR(ReadInt(j, "n_group", false, 1, &c.n_group));
      RETURN_IF_ERROR(ReadInt(j, "topk_group", false, 1, &c.topk_group));
      RETURN_IF_ERROR(ReadFloat(j, "routed_scaling_factor", &c.routed_scaling_factor));
      c.norm_topk_prob = false;
      RETURN_IF_ERROR(ReadBool(j, "norm_topk_prob", &c.norm_topk_prob));
      c.scoring_func = c.family == Family::kDeepseekV3 ? "sigmoid" : "softmax";
      RETURN_IF_ERROR(ReadString(j, "scoring_func", &c.scoring_func));
      c.topk_method = c.family == Family::kDeepseekV3 ? "noaux_tc" : "greedy";
      RETURN_IF_ERROR(ReadString(j, "topk_method", &c.topk_method));
      break;
  }
  return absl::OkStatus();
}

absl::Status Validate(const ModelConfig& c) {
  if (c.top_k > c.num_experts) {
    return FieldError("num_experts_per_tok", absl::StrCat("(", c.top_k, ") exceeds the number of experts (", c.num_experts, ")"));
  }
  if (c.hidden_act != "silu") return FieldError("hidden_act", absl::StrCat("is '", c.hidden_act, "'; supported: silu"));
  if (c.scoring_func != "softmax" && c.scoring_func != "sigmoid") {
    return FieldError("scoring_func", absl::StrCat("is '", c.scoring_func, "'; supported: softmax, sigmoid"));
  }
  if (c.topk_method != "greedy" && c.topk_method != "group_limited_greedy" && c.topk_method != "noaux_tc") {
    return FieldError("topk_method", absl::StrCat("is '", c.topk_method, "'; supported: greedy, group_limited_greedy, noaux_tc"));
  }
  if (c.topk_method != "greedy") {
    if (c.num_experts % c.n_group != 0) {
      return FieldError("n_group", absl::StrCat("(", c.n_group, ") does not divide the ", c.num_experts, " experts"));
    }
    if (c.topk_group > c.n_group) return FieldError("topk_group", absl::StrCat("(", c.topk_group, ") exceeds n_group (", c.n_group, ")"));
    if (c.top_k > c.topk_group * (c.num_experts / c.n_group)) {
      return FieldError("num_experts_per_tok", "exceeds the experts of the topk_group kept groups");
    }
    if (c.topk_method == "noaux_tc" && c.num_experts / c.n_group < 2) {
      return FieldError("n_group", "leaves fewer than 2 experts per group (noaux_tc scores a group by its top 2)");
    }
  }
  for (int l = 0; l < c.num_layers; ++l) {
    if (!c.IsMoeLayer(l) && c.intermediate_size <= 0) {
      return FieldError("intermediate_size", absl::StrCat("is needed: layer ", l, " is a dense MLP layer"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view FamilyModelType(Family family) {
  switch (family) {
    case Family::kMixtral: return "mixtral";
    case Family::kQwen2Moe: return "qwen2_moe";
    case Family::kQwen3Moe: return "qwen3_moe";
    case Family::kOlmoe: return "olmoe";
    case Family::kDeepseekV2: return "deepseek_v2";
    case Family::kDeepseekV3: return "deepseek_v3";
    case Family::kSwitch: return "switch_moe";
  }
  return "?";
}

absl::StatusOr<Family> ParseFamily(absl::string_view model_type) {
  for (Family f : {Family::kMixtral, Family::kQwen2Moe, Family::kQwen3Moe, Family::kOlmoe,
                   Family::kDeepseekV2, Family::kDeepseekV3, Family::kSwitch}) {
    if (model_type == FamilyModelType(f)) return f;
  }
  if (model_type == "switch_transformers") {
    return FieldError("model_type", "is 'switch_transformers' (an encoder-decoder with ReLU experts), which moe-serve "
                                    "does not serve; 'switch_moe' is a decoder MoE layer with Switch top-1 routing");
  }
  return FieldError("model_type", absl::StrCat("is '", model_type, "'; supported: mixtral, qwen2_moe, qwen3_moe, "
                                                "olmoe, deepseek_v2, deepseek_v3, switch_moe"));
}

bool ModelConfig::IsMoeLayer(int layer) const {
  switch (family) {
    case Family::kQwen2Moe:
    case Family::kQwen3Moe:
      return std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) == mlp_only_layers.end() &&
             (layer + 1) % decoder_sparse_step == 0;
    case Family::kDeepseekV2:
    case Family::kDeepseekV3:
      return layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
    default:
      return true;
  }
}

bool ModelConfig::HasAlwaysOn(int layer) const { return AlwaysOnIntermediate(layer) > 0; }

int ModelConfig::AlwaysOnIntermediate(int layer) const {
  if (!IsMoeLayer(layer)) return intermediate_size;
  if (family == Family::kQwen2Moe) return shared_expert_intermediate_size;
  if (family == Family::kDeepseekV2 || family == Family::kDeepseekV3) return n_shared_experts * moe_intermediate_size;
  return 0;
}

bool ModelConfig::HasSharedGate(int layer) const {
  return family == Family::kQwen2Moe && IsMoeLayer(layer) && shared_expert_intermediate_size > 0;
}

absl::StatusOr<ModelConfig> ModelConfig::Parse(absl::string_view json_text) {
  Json j;
  try {
    j = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");
  if (!j.contains("model_type") || !j["model_type"].is_string()) {
    return absl::InvalidArgumentError("config.json: missing string field 'model_type'");
  }
  ModelConfig c;
  c.model_type = j["model_type"].get<std::string>();
  ASSIGN_OR_RETURN(c.family, ParseFamily(c.model_type));
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    return FieldError("quantization_config",
                      absl::StrCat("(", j["quantization_config"].dump(), ") is not supported: moe-serve serves F32, "
                                   "BF16 and F16 weights; dequantise the checkpoint first (e.g. DeepSeek's FP8 to BF16)"));
  }
  RETURN_IF_ERROR(ParseFamilyFields(j, c));
  RETURN_IF_ERROR(ReadString(j, "hidden_act", &c.hidden_act));
  RETURN_IF_ERROR(ReadString(j, "torch_dtype", &c.torch_dtype));
  RETURN_IF_ERROR(Validate(c));
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelConfig> config = Parse(text.str());
  if (!config.ok()) return absl::Status(config.status().code(), absl::StrCat(path, ": ", config.status().message()));
  return config;
}

std::string ModelConfig::ToJson() const {
  nlohmann::ordered_json j;
  j["model_type"] = model_type;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_layers;
  j["hidden_act"] = hidden_act;
  j["torch_dtype"] = torch_dtype;
  switch (family) {
    case Family::kMixtral:
      j["architectures"] = {"MixtralForCausalLM"};
      j["num_local_experts"] = num_experts;
      j["num_experts_per_tok"] = top_k;
      j["intermediate_size"] = moe_intermediate_size;
      break;
    case Family::kOlmoe:
    case Family::kSwitch:
      j["num_experts"] = num_experts;
      j["num_experts_per_tok"] = top_k;
      j["intermediate_size"] = moe_intermediate_size;
      if (family == Family::kOlmoe) j["norm_topk_prob"] = norm_topk_prob;
      if (family == Family::kSwitch) j["capacity_factor"] = capacity_factor;
      break;
    case Family::kQwen2Moe:
    case Family::kQwen3Moe:
      j["num_experts"] = num_experts;
      j["num_experts_per_tok"] = top_k;
      j["moe_intermediate_size"] = moe_intermediate_size;
      j["intermediate_size"] = intermediate_size;
      j["norm_topk_prob"] = norm_topk_prob;
      j["decoder_sparse_step"] = decoder_sparse_step;
      j["mlp_only_layers"] = mlp_only_layers;
      if (family == Family::kQwen2Moe) j["shared_expert_intermediate_size"] = shared_expert_intermediate_size;
      break;
    case Family::kDeepseekV2:
    case Family::kDeepseekV3:
      j["n_routed_experts"] = num_experts;
      j["num_experts_per_tok"] = top_k;
      j["moe_intermediate_size"] = moe_intermediate_size;
      j["intermediate_size"] = intermediate_size;
      j["n_shared_experts"] = n_shared_experts;
      j["first_k_dense_replace"] = first_k_dense_replace;
      j["moe_layer_freq"] = moe_layer_freq;
      j["n_group"] = n_group;
      j["topk_group"] = topk_group;
      j["topk_method"] = topk_method;
      j["scoring_func"] = scoring_func;
      j["norm_topk_prob"] = norm_topk_prob;
      j["routed_scaling_factor"] = routed_scaling_factor;
      break;
  }
  return j.dump(2) + "\n";
}

int64_t ModelConfig::TotalParameters() const {
  int64_t total = 0;
  const int64_t h = hidden_size;
  for (int l = 0; l < num_layers; ++l) {
    if (IsMoeLayer(l)) total += num_experts * h + int64_t{num_experts} * 3 * h * moe_intermediate_size;
    if (HasSharedGate(l)) total += h;
    total += 3 * h * AlwaysOnIntermediate(l);
  }
  return total;
}

int64_t ModelConfig::ActiveParameters() const {
  int64_t active = 0;
  const int64_t h = hidden_size;
  for (int l = 0; l < num_layers; ++l) {
    if (IsMoeLayer(l)) active += num_experts * h + int64_t{top_k} * 3 * h * moe_intermediate_size;
    if (HasSharedGate(l)) active += h;
    active += 3 * h * AlwaysOnIntermediate(l);
  }
  return active;
}

ModelConfig DefaultConfig(Family family, int hidden, int moe_intermediate, int experts, int top_k, int layers) {
  ModelConfig c;
  c.family = family;
  c.model_type = std::string(FamilyModelType(family));
  c.hidden_size = hidden;
  c.moe_intermediate_size = moe_intermediate;
  c.num_experts = experts;
  c.top_k = family == Family::kSwitch ? 1 : top_k;
  c.num_layers = layers;
  c.norm_topk_prob = family == Family::kMixtral;
  switch (family) {
    case Family::kQwen2Moe:
      c.intermediate_size = 2 * moe_intermediate;
      c.shared_expert_intermediate_size = 2 * moe_intermediate;
      break;
    case Family::kQwen3Moe:
      c.intermediate_size = 2 * moe_intermediate;
      c.norm_topk_prob = true;
      break;
    case Family::kDeepseekV2:
      c.intermediate_size = 2 * moe_intermediate;
      c.n_shared_experts = 2;
      c.first_k_dense_replace = 1;
      c.topk_method = "group_limited_greedy";
      c.n_group = experts % 4 == 0 ? 4 : 1;
      c.topk_group = c.n_group > 1 ? 2 : 1;
      if (c.n_group == 1) c.topk_method = "greedy";
      c.routed_scaling_factor = 16.0f;
      break;
    case Family::kDeepseekV3:
      c.intermediate_size = 2 * moe_intermediate;
      c.n_shared_experts = 1;
      c.first_k_dense_replace = 1;
      c.scoring_func = "sigmoid";
      c.topk_method = "noaux_tc";
      c.n_group = experts % 4 == 0 ? 4 : 1;
      c.topk_group = c.n_group > 1 ? 2 : 1;
      c.norm_topk_prob = true;
      c.routed_scaling_factor = 2.5f;
      break;
    case Family::kSwitch:
      c.capacity_factor = 1.25f;
      break;
    default:
      break;
  }
  return c;
}

}  // namespace moe::experts
