// model/families/family.h
// One MoE family as data: the config.json `model_type`s it accepts, how its fields (with the
// aliases Hugging Face's config classes accept) map onto the common ModelConfig, which layers are
// MoE, its tensor names and its routing math. Each family is one file in model/families/;
// family_registry.cc lists them. Read by ModelConfig (parse, ToJson, layer rules); descriptors are
// constants, safe to share across threads.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "model/model_config.h"
#include "nlohmann/json.hpp"

namespace moe::model {

// Typed reads of config.json fields, each by its names: the first is the one the family writes,
// the others are aliases (HF's attribute_map, names renamed across transformers versions); the
// first that is present wins. Errors are INVALID_ARGUMENT naming the field.
class ConfigFields {
 public:
  explicit ConfigFields(const nlohmann::json& j) : j_(j) {}
  using Names = std::initializer_list<const char*>;
  absl::Status Int(Names names, bool required, int min, int* out) const;
  absl::Status Bool(Names names, bool* out) const;
  absl::Status Float(Names names, float* out) const;  // >= 0
  absl::Status String(Names names, std::string* out) const;
  absl::Status IntList(Names names, std::vector<int>* out) const;
  absl::Status StringList(Names names, std::vector<std::string>* out) const;
  // Whether any of the names is present (not null).
  bool Has(Names names) const;
  // Whether `name` is present with the value null (DBRX's "no renormalisation").
  bool IsNull(const char* name) const;
  // The object under `name` (DBRX's nested ffn_config), or nullptr when absent or not an object.
  const nlohmann::json* Object(const char* name) const;

 private:
  const nlohmann::json* Find(Names names, const char** found) const;
  const nlohmann::json& j_;
};

// c.shared_intermediate = n_shared_experts × moe_intermediate_size (DeepSeek-style fused shared
// experts): INVALID_ARGUMENT, not an int overflow, for a product past 2^30.
absl::Status SetFusedSharedWidth(ModelConfig& c);

struct FamilyDescriptor {
  const char* model_type;                // canonical, what ToJson writes
  std::vector<const char*> also_accepts;  // other model_types read the same way (e.g. "kimi_k2")
  const char* architecture;              // ToJson's "architectures"
  TensorNames names;
  // Reads the family's fields (hidden_size, num_hidden_layers, hidden_act, torch_dtype are read
  // before) and sets its routing math, shared experts and layer fields in `c`.
  absl::Status (*parse)(const ConfigFields& j, ModelConfig& c);
  // Writes the family's own fields back (ToJson), in its canonical names.
  void (*write)(const ModelConfig& c, nlohmann::ordered_json& j);
  // Sets the family's defaults on `c`, whose dims are set (DefaultConfig: generators, tests).
  void (*defaults)(ModelConfig& c);
  // Whether `layer` is an MoE layer (the others are dense MLP layers).
  bool (*is_moe)(const ModelConfig& c, int layer);
};

// The dims nearly every family has: routed experts, top-k and a routed expert's intermediate
// size, each read by its names (canonical first, then aliases; all required) and written under
// the canonical ones.
absl::Status ReadExpertDims(const ConfigFields& j, ModelConfig& c, ConfigFields::Names experts,
                            ConfigFields::Names top_k, ConfigFields::Names intermediate);
void WriteExpertDims(const ModelConfig& c, nlohmann::ordered_json& j, const char* experts, const char* top_k,
                     const char* intermediate);

// The DeepSeek-V3 MoE block under a family's own field names (families/deepseek.cc), for the
// families that rename V3's fields: sigmoid scores, top-k on scores + the selection bias within the
// kept groups (n_group/topk_group, top-2 sums), the chosen scores renormalised (+1e-20) when
// norm_topk_prob (default true), × the `scale` field (default 1); the `shared` count of experts
// fused into one MLP of that many × moe_intermediate_size; dense layers by mlp_layer_types or
// first_k_dense_replace (DeepseekLayerRule). WriteV3Renamed writes the same fields back;
// V3RenamedDefaults is DefaultConfig's.
absl::Status ParseV3Renamed(const ConfigFields& j, ModelConfig& c, ConfigFields::Names experts,
                            ConfigFields::Names shared, ConfigFields::Names scale);
void WriteV3Renamed(const ModelConfig& c, nlohmann::ordered_json& j, const char* experts, const char* shared,
                    const char* scale);
void V3RenamedDefaults(ModelConfig& c);

// Every family, in the order docs/ROUTING.md lists them.
const std::vector<const FamilyDescriptor*>& AllFamilies();

// Layer rules several families share.
bool EveryLayerIsMoe(const ModelConfig& c, int layer);
bool DeepseekLayerRule(const ModelConfig& c, int layer);  // first_k_dense_replace, moe_layer_freq
bool QwenLayerRule(const ModelConfig& c, int layer);      // decoder_sparse_step, mlp_only_layers

// Per-expert tensor names of the two common layouts (HF names of the projections).
inline constexpr const char* kHfProjections[3] = {"gate_proj", "up_proj", "down_proj"};

}  // namespace moe::model
