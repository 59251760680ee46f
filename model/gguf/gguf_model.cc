// model/gguf/gguf_model.cc
#include "model/gguf/gguf_model.h"

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "model/tensor.h"
#include "nlohmann/json.hpp"

namespace moe::model {
namespace {

// Reads `{arch}.<key>` of the first file.
class ArchKeys {
 public:
  ArchKeys(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}
  absl::StatusOr<int64_t> Int(const char* key) const { return f_.Int(Key(key)); }
  absl::StatusOr<int64_t> Int(const char* key, int64_t fallback) const {
    return f_.Int(Key(key), fallback);
  }
  absl::StatusOr<double> Float(const char* key, double fallback) const {
    return f_.Float(Key(key), fallback);
  }
  absl::StatusOr<bool> Bool(const char* key, bool fallback) const {
    return f_.Bool(Key(key), fallback);
  }
  bool HasTensor(const std::string& name) const { return f_.Find(name) != nullptr; }

 private:
  std::string Key(const char* key) const { return absl::StrCat(arch_, ".", key); }
  const GgufFile& f_;
  std::string arch_;
};

// What every MoE architecture has: the layers, the width and the experts.
absl::Status CommonFields(const ArchKeys& k, nlohmann::json& j, const char* experts_field) {
  ASSIGN_OR_RETURN(const int64_t layers, k.Int("block_count"));
  ASSIGN_OR_RETURN(const int64_t hidden, k.Int("embedding_length"));
  ASSIGN_OR_RETURN(const int64_t experts, k.Int("expert_count"));
  ASSIGN_OR_RETURN(const int64_t used, k.Int("expert_used_count"));
  j["num_hidden_layers"] = layers;
  j["hidden_size"] = hidden;
  j[experts_field] = experts;
  j["num_experts_per_tok"] = used;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "float32";
  return absl::OkStatus();
}

// Qwen2-MoE / Qwen3-MoE: every layer MoE; llama.cpp renormalises the top-k weights of qwen3moe and
// not those of qwen2moe (unless the file says otherwise in expert_weights_norm).
absl::Status Qwen(const ArchKeys& k, bool qwen3, nlohmann::json& j) {
  j["model_type"] = qwen3 ? "qwen3_moe" : "qwen2_moe";
  RETURN_IF_ERROR(CommonFields(k, j, "num_experts"));
  ASSIGN_OR_RETURN(const int64_t inter, k.Int("expert_feed_forward_length"));
  j["moe_intermediate_size"] = inter;
  ASSIGN_OR_RETURN(const bool norm, k.Bool("expert_weights_norm", qwen3));
  j["norm_topk_prob"] = norm;
  j["decoder_sparse_step"] = 1;
  j["mlp_only_layers"] = nlohmann::json::array();
  if (!qwen3) {
    ASSIGN_OR_RETURN(const int64_t shared, k.Int("expert_shared_feed_forward_length", 0));
    j["shared_expert_intermediate_size"] = shared;
  }
  return absl::OkStatus();
}

// Mixtral, as llama.cpp converts it: architecture `llama` with experts, softmax top-k renormalised.
absl::Status Llama(const ArchKeys& k, nlohmann::json& j) {
  ASSIGN_OR_RETURN(const int64_t experts, k.Int("expert_count", 0));
  if (experts == 0)
    return absl::InvalidArgumentError(
        "a llama model without experts: nothing for moe-serve to serve");
  j["model_type"] = "mixtral";
  RETURN_IF_ERROR(CommonFields(k, j, "num_local_experts"));
  ASSIGN_OR_RETURN(const int64_t inter, k.Int("feed_forward_length"));
  j["intermediate_size"] = inter;
  return absl::OkStatus();
}

// DeepSeek-V2/V3/R1 and Kimi-K2 (deepseek2), GLM-4.5 (glm4moe): leading dense layers, shared
// experts, softmax or sigmoid scoring (expert_gating_func 1 or 2), a selection bias
// (exp_probs_b), expert groups, a routed scaling factor and optional renormalisation.
absl::Status DeepseekLike(const ArchKeys& k, bool glm, nlohmann::json& j) {
  ASSIGN_OR_RETURN(const int64_t gating, k.Int("expert_gating_func", glm ? 2 : 1));
  if (gating != 1 && gating != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert_gating_func ", gating, " (1 softmax and 2 sigmoid are served)"));
  }
  const bool sigmoid = gating == 2;
  const bool biased = k.HasTensor("blk.0.exp_probs_b.bias") ||
                      k.HasTensor(absl::StrCat("blk.", 1, ".exp_probs_b.bias")) || sigmoid;
  ASSIGN_OR_RETURN(const int64_t groups, k.Int("expert_group_count", 1));
  ASSIGN_OR_RETURN(const int64_t groups_used, k.Int("expert_group_used_count", 1));
  j["model_type"] = glm ? "glm4_moe" : sigmoid ? "deepseek_v3" : "deepseek_v2";
  RETURN_IF_ERROR(CommonFields(k, j, "n_routed_experts"));
  if (glm) {
    ASSIGN_OR_RETURN(const int64_t mtp, k.Int("nextn_predict_layers", 0));
    j["num_hidden_layers"] =
        j["num_hidden_layers"].get<int64_t>() - mtp;  // HF counts the MTP layers apart
  }
  ASSIGN_OR_RETURN(const int64_t inter, k.Int("expert_feed_forward_length"));
  ASSIGN_OR_RETURN(const int64_t dense, k.Int("feed_forward_length", 0));
  ASSIGN_OR_RETURN(const int64_t shared, k.Int("expert_shared_count", 0));
  ASSIGN_OR_RETURN(const int64_t leading, k.Int("leading_dense_block_count", 0));
  ASSIGN_OR_RETURN(const double scale, k.Float("expert_weights_scale", 1.0));
  ASSIGN_OR_RETURN(const bool norm, k.Bool("expert_weights_norm", false));
  j["moe_intermediate_size"] = inter;
  j["intermediate_size"] = dense;
  j["n_shared_experts"] = shared;
  j["first_k_dense_replace"] = leading;
  j["moe_layer_freq"] = 1;
  j["routed_scaling_factor"] = scale;
  j["norm_topk_prob"] = norm;
  j["n_group"] = groups;
  j["topk_group"] = groups_used;
  if (!glm) {
    j["scoring_func"] = sigmoid ? "sigmoid" : "softmax";
    j["topk_method"] = biased && sigmoid ? "noaux_tc"
                       : groups > 1      ? "group_limited_greedy"
                                         : "greedy";
  }
  return absl::OkStatus();
}

// gpt-oss: experts with biases on every projection and the clamped activation (llama.cpp's
// swiglu_oai: alpha 1.702, limit 7), router logits with a bias, softmax over the chosen k.
absl::Status GptOss(const ArchKeys& k, nlohmann::json& j) {
  j["model_type"] = "gpt_oss";
  RETURN_IF_ERROR(CommonFields(k, j, "num_local_experts"));
  ASSIGN_OR_RETURN(const int64_t inter, k.Int("expert_feed_forward_length"));
  j["intermediate_size"] = inter;
  ASSIGN_OR_RETURN(const double limit, k.Float("swiglu_limit", 7.0));
  j["swiglu_limit"] = limit;
  return absl::OkStatus();
}

struct Architecture {
  const char* name;
  absl::Status (*translate)(const ArchKeys& k, nlohmann::json& j);
};

constexpr Architecture kArchitectures[] = {
    {"qwen2moe", [](const ArchKeys& k, nlohmann::json& j) { return Qwen(k, false, j); }},
    {"qwen3moe", [](const ArchKeys& k, nlohmann::json& j) { return Qwen(k, true, j); }},
    {"llama", Llama},
    {"deepseek2", [](const ArchKeys& k, nlohmann::json& j) { return DeepseekLike(k, false, j); }},
    {"glm4moe", [](const ArchKeys& k, nlohmann::json& j) { return DeepseekLike(k, true, j); }},
    {"gpt-oss", GptOss},
};

// GGUF's tensor names (llama.cpp's LLM_TENSOR_NAMES), in TensorNames' patterns.
TensorNames GgufNames(bool per_expert_tensors) {
  TensorNames n;
  n.gate = "blk.{L}.ffn_gate_inp.weight";
  n.gate_bias = "blk.{L}.exp_probs_b.bias";
  n.expert = per_expert_tensors ? "blk.{L}.ffn_{P}.{E}.weight" : "blk.{L}.ffn_{P}_exps.weight#{E}";
  n.expert_projections = {"gate", "up", "down"};
  n.mlp_projections = {"gate", "up", "down"};
  n.shared = "blk.{L}.ffn_{P}_shexp.weight";
  n.shared_gate = "blk.{L}.ffn_gate_inp_shexp.weight";
  n.dense = "blk.{L}.ffn_{P}.weight";
  return n;
}

// `…-00001-of-00003.gguf`: the prefix and the count, or count 0 for a single file.
int SplitCount(const std::string& path, std::string* prefix) {
  const size_t n = path.size();
  // "-00001-of-00003.gguf" is 20 characters.
  if (n < 21 || path.compare(n - 5, 5, ".gguf") != 0 || path.compare(n - 14, 4, "-of-") != 0 ||
      path[n - 20] != '-') {
    return 0;
  }
  int index, count;
  if (!absl::SimpleAtoi(path.substr(n - 19, 5), &index) ||
      !absl::SimpleAtoi(path.substr(n - 10, 5), &count) || index != 1 || count < 1) {
    return 0;
  }
  *prefix = path.substr(0, n - 20);
  return count;
}

}  // namespace

const WeightFormat* FormatOfGgmlType(const GgmlType& type) {
  static const struct {
    uint32_t id;
    const WeightFormat* format;
  } kFormats[] = {{8, &kQ8_0},  {2, &kQ4_0},   {12, &kQ4_K},     {13, &kQ5_K},
                  {14, &kQ6_K}, {23, &kIq4Xs}, {39, &kMxfp4Gguf}};
  for (const auto& f : kFormats) {
    if (f.id == type.id) return f.format;
  }
  return nullptr;
}

std::vector<std::string> ServedGgufArchitectures() {
  std::vector<std::string> names;
  for (const Architecture& a : kArchitectures) names.emplace_back(a.name);
  return names;
}

absl::StatusOr<std::unique_ptr<GgufModel>> GgufModel::Open(const std::string& path) {
  std::unique_ptr<GgufModel> model(new GgufModel());
  std::string prefix;
  const int count = SplitCount(path, &prefix);
  if (count == 0) {
    ASSIGN_OR_RETURN(auto file, GgufFile::Open(path));
    model->files_.push_back(std::move(file));
  } else {
    for (int i = 1; i <= count; ++i) {
      ASSIGN_OR_RETURN(auto file,
                       GgufFile::Open(absl::StrFormat("%s-%05d-of-%05d.gguf", prefix, i, count)));
      model->files_.push_back(std::move(file));
    }
  }
  const GgufFile& first = *model->files_[0];
  const absl::StatusOr<std::string> arch_or = first.String("general.architecture");
  if (!arch_or.ok()) return arch_or.status();
  const std::string& arch = *arch_or;
  const Architecture* found = nullptr;
  for (const Architecture& a : kArchitectures) {
    if (arch == a.name) found = &a;
  }
  if (found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": GGUF architecture '", arch,
        "' is not served (served: ", absl::StrJoin(ServedGgufArchitectures(), ", "), ")"));
  }
  nlohmann::json j = nlohmann::json::object();
  const absl::Status translated = found->translate(ArchKeys(first, arch), j);
  if (!translated.ok()) {
    return absl::Status(translated.code(),
                        absl::StrCat(path, " (", arch, "): ", translated.message()));
  }
  absl::StatusOr<ModelConfig> config = ModelConfig::Parse(j.dump());
  if (!config.ok()) {
    return absl::Status(
        config.status().code(),
        absl::StrCat(path, " (", arch, ", read as ", j.dump(), "): ", config.status().message()));
  }
  model->config_ = *std::move(config);
  // Mixtral files from before stacked experts hold ffn_gate.E per expert.
  model->config_.names = GgufNames(first.Find("blk.0.ffn_gate.0.weight") != nullptr);
  if (arch == "gpt-oss") {
    model->config_.names.router_bias = "blk.{L}.ffn_gate_inp.bias";
    model->config_.names.expert_bias = "blk.{L}.ffn_{P}_exps.bias#{E}";
  }
  return model;
}

absl::StatusOr<GgufModel::View> GgufModel::Find(const std::string& name) const {
  std::string tensor_name = name;
  int64_t expert = -1;
  if (const size_t hash = name.rfind('#'); hash != std::string::npos) {
    if (!absl::SimpleAtoi(name.substr(hash + 1), &expert) || expert < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad expert slice '", name, "'"));
    }
    tensor_name = name.substr(0, hash);
  }
  for (const auto& file : files_) {
    const GgufTensor* t = file->Find(tensor_name);
    if (t == nullptr) continue;
    View v{.file = file, .tensor = t, .bytes = file->Data(*t), .shape = t->Shape()};
    if (expert >= 0) {
      if (v.shape.size() < 2 || expert >= v.shape[0]) {
        return absl::InvalidArgumentError(absl::StrCat("expert ", expert, " of tensor '",
                                                       tensor_name, "' ", ShapeString(v.shape),
                                                       " in ", file->path()));
      }
      const uint64_t slice = t->bytes / static_cast<uint64_t>(v.shape[0]);
      v.bytes += slice * static_cast<uint64_t>(expert);
      v.shape.erase(v.shape.begin());
    }
    return v;
  }
  return absl::NotFoundError(absl::StrCat(
      "no tensor '", tensor_name, "' in ", files_[0]->path(),
      files_.size() > 1 ? absl::StrCat(" or its ", files_.size() - 1, " other shards") : ""));
}

}  // namespace moe::model
