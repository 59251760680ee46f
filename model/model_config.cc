// model/model_config.cc
#include "model/model_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "model/compressed_tensors.h"
#include "model/families/family.h"
#include "model/families/not_served.h"
#include "nlohmann/json.hpp"

namespace moe::model {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: field '", field, "' ", what));
}

// A multimodal model whose text decoder is a served family: its config.json nests the decoder's
// config under text_config, and its weights sit where the text model's own checkpoints have
// `from`, under `to` (Qwen3.5-MoE and GLM-4.5V: model.language_model.layers.L.mlp.*; Kimi K2.5:
// language_model.model.blocks.L.mlp.*, as transformers saves it).
struct MultimodalWrapper {
  const char* model_type;
  const char* text_model_type;
  const char* from;
  const char* to;
};

constexpr MultimodalWrapper kWrappers[] = {
    {"qwen3_5_moe", "qwen3_5_moe_text", "model.", "model.language_model."},
    {"qwen3_vl_moe", "qwen3_vl_moe_text", "model.", "model.language_model."},
    {"glm4v_moe", "glm4v_moe_text", "model.", "model.language_model."},
    {"kimi_k25", "deepseek_v3", "model.layers.", "language_model.model.blocks."},
};

absl::StatusOr<const FamilyDescriptor*> FindFamily(absl::string_view model_type) {
  for (const FamilyDescriptor* f : AllFamilies()) {
    if (model_type == f->model_type) return f;
    for (const char* also : f->also_accepts) {
      if (model_type == also) return f;
    }
  }
  if (const NotServed* n = FindNotServed(model_type); n != nullptr) {
    return FieldError("model_type", absl::StrCat("is '", model_type, "', which moe-serve does not serve",
                                                  n->by_design ? " (by design): " : " yet: ", n->reason));
  }
  return FieldError("model_type", absl::StrCat("is '", model_type, "'; supported: ",
                                                absl::StrJoin(ServedModelTypes(), ", "), "; multimodal (their text decoders): ",
                                                absl::StrJoin(kWrappers, ", ", [](std::string* out, const MultimodalWrapper& w) {
                                                  out->append(w.model_type);
                                                })));
}

// FP8 block-scaled (DeepSeek-V3/R1, Kimi-K2), MXFP4 (gpt-oss), AWQ and GPTQ 4-bit,
// compressed-tensors (model/compressed_tensors.h); anything else
// is refused naming its method.
absl::Status ParseQuantization(const Json& q, ModelConfig& c) {
  const std::string method = q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
                                 ? q["quant_method"].get<std::string>()
                                 : "";
  if (method == "mxfp4") {
    if (c.names.stacked_gate_up.empty()) {
      return FieldError("quantization_config", absl::StrCat("is mxfp4, served for stacked experts (gpt_oss) only, not ",
                                                            c.model_type));
    }
    c.mxfp4 = true;
    return absl::OkStatus();
  }
  if (method == "compressed-tensors") return ParseCompressedTensorsConfig(q, c);
  if (method == "awq" || method == "gptq") {
    // 4 bits, groups of 128 (our int4 blocks), zero points, in the layouts moe-serve unpacks.
    const auto number = [&](std::initializer_list<const char*> keys, int64_t fallback) -> int64_t {
      for (const char* k : keys) {
        if (q.contains(k) && q[k].is_number_integer()) return q[k].get<int64_t>();
      }
      return fallback;
    };
    const int64_t bits = number({"bits", "w_bit"}, 0), group = number({"group_size", "q_group_size"}, 0);
    if (bits != 4 || group != 128) {
      return FieldError("quantization_config", absl::StrCat("is ", method, " with bits ", bits, " and group_size ", group,
                                                            "; served: 4 bits in groups of 128"));
    }
    if (method == "awq") {
      const std::string version = q.contains("version") && q["version"].is_string() ? q["version"].get<std::string>() : "gemm";
      if (version != "gemm" && version != "GEMM") {
        return FieldError("quantization_config", absl::StrCat("is awq version '", version, "'; served: gemm"));
      }
      if (q.contains("zero_point") && q["zero_point"] == false) {
        return FieldError("quantization_config", "is awq without zero points; served: zero_point true");
      }
      c.int4_method = "awq";
      return absl::OkStatus();
    }
    if (q.contains("desc_act") && q["desc_act"] == true) {
      return FieldError("quantization_config", "is gptq with desc_act (act-order): not served; re-quantize with desc_act false");
    }
    const std::string format = q.contains("checkpoint_format") && q["checkpoint_format"].is_string()
                                   ? q["checkpoint_format"].get<std::string>() : "gptq";
    if (format != "gptq" && format != "gptq_v2") {
      return FieldError("quantization_config", absl::StrCat("is gptq checkpoint_format '", format, "'; served: gptq, gptq_v2"));
    }
    c.int4_method = format;
    return absl::OkStatus();
  }
  if (method != "fp8") {
    return FieldError("quantization_config",
                      absl::StrCat("has quant_method '", method, "' (", q.dump(), "), which moe-serve does not serve; "
                                   "served: fp8 (e4m3, block-scaled), mxfp4 (gpt_oss), awq and gptq (4-bit, groups of 128), "
                                   "compressed-tensors (int4 packed, int8, fp8)"));
  }
  if (q.contains("fmt") && q["fmt"] != "e4m3") {
    return FieldError("quantization_config", absl::StrCat("has fmt ", q["fmt"].dump(), "; served: e4m3"));
  }
  const Json& b = q.contains("weight_block_size") ? q["weight_block_size"] : Json();
  if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() ||
      b[0].get<int64_t>() < 1 || b[1].get<int64_t>() < 1 || b[0].get<int64_t>() > (1 << 20) ||
      b[1].get<int64_t>() > (1 << 20)) {
    return FieldError("quantization_config", absl::StrCat("needs weight_block_size [n, k] of positive integers, got ",
                                                          b.dump(), " (per-tensor FP8 is not served)"));
  }
  c.fp8_block_n = b[0].get<int>();
  c.fp8_block_k = b[1].get<int>();
  return absl::OkStatus();
}

// More layers than any model has (the largest have ~128): a corrupt count, refused before the
// per-layer checks below walk it (a fuzzed GGUF with 600 M layers took a minute here).
constexpr int kMaxLayers = 4096;

absl::Status Validate(const ModelConfig& c) {
  if (c.num_layers > kMaxLayers) {
    return FieldError("num_hidden_layers", absl::StrCat("(", c.num_layers, ") exceeds the ", kMaxLayers,
                                                        " layers moe-serve serves"));
  }
  if (c.top_k > c.num_experts + c.zero_experts) {
    return FieldError("num_experts_per_tok",
                      absl::StrCat("(", c.top_k, ") exceeds the number of experts (", c.num_experts + c.zero_experts, ")"));
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
  if (!c.mlp_layer_types.empty() && static_cast<int>(c.mlp_layer_types.size()) != c.num_layers) {
    return FieldError("mlp_layer_types", absl::StrCat("has ", c.mlp_layer_types.size(), " entries for ", c.num_layers,
                                                      " layers"));
  }
  for (const std::string& t : c.mlp_layer_types) {
    if (t != "dense" && t != "sparse") return FieldError("mlp_layer_types", absl::StrCat("has '", t, "'; expected dense or sparse"));
  }
  for (int l = 0; l < c.num_layers; ++l) {
    if (!c.IsMoeLayer(l) && c.intermediate_size <= 0) {
      return FieldError("intermediate_size", absl::StrCat("is needed: layer ", l, " is a dense MLP layer"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// --- ConfigFields -------------------------------------------------------------------------------

const Json* ConfigFields::Find(Names names, const char** found) const {
  for (const char* name : names) {
    if (j_.contains(name) && !j_[name].is_null()) {
      *found = name;
      return &j_[name];
    }
  }
  *found = *names.begin();
  return nullptr;
}

bool ConfigFields::IsNull(const char* name) const { return j_.contains(name) && j_[name].is_null(); }

const Json* ConfigFields::Object(const char* name) const {
  return j_.contains(name) && j_[name].is_object() ? &j_[name] : nullptr;
}

bool ConfigFields::Has(Names names) const {
  const char* name;
  return Find(names, &name) != nullptr;
}

absl::Status ConfigFields::Int(Names names, bool required, int min, int* out) const {
  const char* name;
  const Json* v = Find(names, &name);
  if (v == nullptr) {
    if (!required) return absl::OkStatus();
    std::vector<std::string> all(names.begin(), names.end());
    return absl::InvalidArgumentError(absl::StrCat("config.json: missing field '", all[0], "'",
                                                   all.size() > 1 ? absl::StrCat(" (or its alias '", absl::StrJoin(
                                                                        all.begin() + 1, all.end(), "', '"), "')")
                                                                  : ""));
  }
  if (v->is_array()) return FieldError(name, "is a per-layer list; moe-serve serves one value for every layer");
  if (!v->is_number_integer() || v->get<int64_t>() < min || v->get<int64_t>() > (1 << 30)) {
    return FieldError(name, absl::StrCat("must be an integer >= ", min, ", got ", v->dump()));
  }
  *out = static_cast<int>(v->get<int64_t>());
  return absl::OkStatus();
}

absl::Status ConfigFields::Bool(Names names, bool* out) const {
  const char* name;
  const Json* v = Find(names, &name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return FieldError(name, absl::StrCat("must be true or false, got ", v->dump()));
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status ConfigFields::Float(Names names, float* out) const {
  const char* name;
  const Json* v = Find(names, &name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number() || v->get<double>() < 0) {
    return FieldError(name, absl::StrCat("must be a non-negative number, got ", v->dump()));
  }
  *out = v->get<float>();
  return absl::OkStatus();
}

absl::Status ConfigFields::String(Names names, std::string* out) const {
  const char* name;
  const Json* v = Find(names, &name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return FieldError(name, absl::StrCat("must be a string, got ", v->dump()));
  *out = v->get<std::string>();
  return absl::OkStatus();
}

absl::Status ConfigFields::IntList(Names names, std::vector<int>* out) const {
  const char* name;
  const Json* v = Find(names, &name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_array()) return FieldError(name, "must be a list of layer indices");
  for (const Json& x : *v) {
    if (!x.is_number_integer()) return FieldError(name, "must be a list of layer indices");
    out->push_back(x.get<int>());
  }
  return absl::OkStatus();
}

absl::Status ConfigFields::StringList(Names names, std::vector<std::string>* out) const {
  const char* name;
  const Json* v = Find(names, &name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_array()) return FieldError(name, "must be a list of strings");
  for (const Json& x : *v) {
    if (!x.is_string()) return FieldError(name, "must be a list of strings");
    out->push_back(x.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status SetFusedSharedWidth(ModelConfig& c) {
  const int64_t width = int64_t{c.n_shared_experts} * c.moe_intermediate_size;
  if (width > (int64_t{1} << 30)) {
    return FieldError("n_shared_experts", absl::StrCat("(", c.n_shared_experts, ") × moe_intermediate_size (",
                                                       c.moe_intermediate_size, ") is past 2^30"));
  }
  c.shared_intermediate = static_cast<int>(width);
  return absl::OkStatus();
}

absl::Status ReadExpertDims(const ConfigFields& j, ModelConfig& c, ConfigFields::Names experts,
                            ConfigFields::Names top_k, ConfigFields::Names intermediate) {
  RETURN_IF_ERROR(j.Int(experts, true, 1, &c.num_experts));
  RETURN_IF_ERROR(j.Int(top_k, true, 1, &c.top_k));
  return j.Int(intermediate, true, 1, &c.moe_intermediate_size);
}

void WriteExpertDims(const ModelConfig& c, nlohmann::ordered_json& j, const char* experts, const char* top_k,
                     const char* intermediate) {
  j[experts] = c.num_experts;
  j[top_k] = c.top_k;
  j[intermediate] = c.moe_intermediate_size;
}

// --- Layer rules ----------------------------------------------------------------------------------

bool EveryLayerIsMoe(const ModelConfig&, int) { return true; }

bool DeepseekLayerRule(const ModelConfig& c, int layer) {
  if (!c.mlp_layer_types.empty()) return c.mlp_layer_types[layer] == "sparse";
  return layer >= c.first_k_dense_replace && layer % c.moe_layer_freq == 0;
}

bool QwenLayerRule(const ModelConfig& c, int layer) {
  if (!c.mlp_layer_types.empty()) return c.mlp_layer_types[layer] == "sparse";
  return std::find(c.mlp_only_layers.begin(), c.mlp_only_layers.end(), layer) == c.mlp_only_layers.end() &&
         (layer + 1) % c.decoder_sparse_step == 0;
}

// --- Multimodal wrappers ---------------------------------------------------------------------------

namespace {

const MultimodalWrapper* FindWrapper(absl::string_view model_type) {
  for (const MultimodalWrapper& w : kWrappers) {
    if (model_type == w.model_type) return &w;
  }
  return nullptr;
}

void Prefix(std::string& name, absl::string_view from, absl::string_view to) {
  if (absl::StartsWith(name, from)) name = absl::StrCat(to, name.substr(from.size()));
}

absl::StatusOr<ModelConfig> ParseWrapped(const Json& j, const MultimodalWrapper& w) {
  if (!j.contains("text_config") || !j["text_config"].is_object()) {
    return FieldError("text_config", absl::StrCat("is needed: '", w.model_type, "' nests its text decoder's config there"));
  }
  Json text = j["text_config"];
  if (!text.contains("model_type")) text["model_type"] = w.text_model_type;
  if (text["model_type"] != w.text_model_type) {
    return FieldError("text_config.model_type", absl::StrCat("is ", text["model_type"].dump(), "; '", w.model_type,
                                                             "' wraps ", w.text_model_type));
  }
  if (j.contains("quantization_config") && !text.contains("quantization_config")) {
    text["quantization_config"] = j["quantization_config"];
  }
  ASSIGN_OR_RETURN(ModelConfig c, ModelConfig::Parse(text.dump()));
  TensorNames& n = c.names;
  for (std::string* name : {&n.gate, &n.gate_bias, &n.expert, &n.shared, &n.shared_fused_gate_up, &n.shared_fused_down,
                            &n.shared_gate, &n.dense, &n.stacked_gate_up, &n.stacked_down, &n.stacked_gate_up_bias,
                            &n.stacked_down_bias, &n.router_bias, &n.expert_bias, &n.flat_gate, &n.flat_up,
                            &n.flat_down}) {
    Prefix(*name, w.from, w.to);
  }
  return c;
}

}  // namespace

// --- ModelConfig ----------------------------------------------------------------------------------

std::vector<std::string> ServedModelTypes() {
  std::vector<std::string> types;
  for (const FamilyDescriptor* f : AllFamilies()) types.push_back(f->model_type);
  for (const FamilyDescriptor* f : AllFamilies()) types.insert(types.end(), f->also_accepts.begin(), f->also_accepts.end());
  return types;
}

bool ModelConfig::IsMoeLayer(int layer) const { return family->is_moe(*this, layer); }

bool ModelConfig::HasAlwaysOn(int layer) const { return AlwaysOnIntermediate(layer) > 0; }

int ModelConfig::AlwaysOnIntermediate(int layer) const {
  return IsMoeLayer(layer) ? shared_intermediate : intermediate_size;
}

bool ModelConfig::HasSharedGate(int layer) const { return shared_gate && IsMoeLayer(layer) && shared_intermediate > 0; }

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
  if (const MultimodalWrapper* w = FindWrapper(j["model_type"].get<std::string>()); w != nullptr) {
    return ParseWrapped(j, *w);
  }
  ModelConfig c;
  c.model_type = j["model_type"].get<std::string>();
  ASSIGN_OR_RETURN(c.family, FindFamily(c.model_type));
  c.names = c.family->names;
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    RETURN_IF_ERROR(ParseQuantization(j["quantization_config"], c));
  }
  const ConfigFields fields(j);
  // (d_model and n_layers: DBRX's names, which its config class maps hidden_size and
  // num_hidden_layers onto; num_layers: LongCat-Flash's, which its family reads first.)
  RETURN_IF_ERROR(fields.Int({"hidden_size", "d_model"}, true, 1, &c.hidden_size));
  RETURN_IF_ERROR(fields.Int({"num_hidden_layers", "n_layers", "num_layers"}, true, 1, &c.num_layers));
  RETURN_IF_ERROR(fields.String({"hidden_act"}, &c.hidden_act));
  RETURN_IF_ERROR(fields.String({"torch_dtype", "dtype"}, &c.torch_dtype));
  RETURN_IF_ERROR(c.family->parse(fields, c));
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
  j["model_type"] = family->model_type;
  j["architectures"] = {family->architecture};
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_layers;
  j["hidden_act"] = hidden_act;
  j["torch_dtype"] = torch_dtype;
  family->write(*this, j);
  if (mxfp4) j["quantization_config"] = {{"quant_method", "mxfp4"}};
  if (!int4_method.empty()) {
    j["quantization_config"] = {{"quant_method", int4_method == "awq" ? "awq" : "gptq"}, {"bits", 4}, {"group_size", 128}};
    if (int4_method != "awq") j["quantization_config"]["checkpoint_format"] = int4_method;
  }
  if (!compressed_tensors.empty()) j["quantization_config"] = nlohmann::ordered_json::parse(compressed_tensors);
  if (fp8_block_n > 0) {
    j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                {"weight_block_size", {fp8_block_n, fp8_block_k}}};
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

absl::StatusOr<ModelConfig> DefaultConfig(absl::string_view model_type, int hidden, int moe_intermediate,
                                          int experts, int top_k, int layers) {
  ModelConfig c;
  ASSIGN_OR_RETURN(c.family, FindFamily(model_type));
  c.model_type = c.family->model_type;
  c.names = c.family->names;
  c.hidden_size = hidden;
  c.moe_intermediate_size = moe_intermediate;
  c.num_experts = experts;
  c.top_k = top_k;
  c.num_layers = layers;
  c.family->defaults(c);
  RETURN_IF_ERROR(Validate(c));
  return c;
}

}  // namespace moe::model
