// model/gguf/gguf_writer.cc
#include "model/gguf/gguf_writer.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "model/dtype.h"
#include "model/formats/weight_format.h"
#include "model/quantized_matrix.h"

namespace moe::model {
namespace {

struct TypeInfo {
  const char* name;
  uint32_t ggml_id;
  const WeightFormat* format;  // nullptr: a float type
};

const TypeInfo kTypes[] = {{"f32", 0, nullptr}, {"f16", 1, nullptr}, {"bf16", 30, nullptr},
                           {"q8_0", 8, &kQ8_0}, {"q4_0", 2, &kQ4_0}, {"q4_k", 12, &kQ4_K},
                           {"q6_k", 14, &kQ6_K}};

class Writer {
 public:
  template <typename T>
  void Put(std::vector<uint8_t>& out, T v) {
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T));
  }
  void PutString(std::vector<uint8_t>& out, const std::string& s) {
    Put<uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  void Key(const std::string& key, uint32_t type) {
    PutString(kv_, key);
    Put(kv_, type);
    ++n_kv_;
  }
  void U32(const std::string& key, uint32_t v) {
    Key(key, 4);
    Put(kv_, v);
  }
  void F32(const std::string& key, float v) {
    Key(key, 6);
    Put(kv_, v);
  }
  void Bool(const std::string& key, bool v) {
    Key(key, 7);
    Put<uint8_t>(kv_, v ? 1 : 0);
  }
  void String(const std::string& key, const std::string& v) {
    Key(key, 8);
    PutString(kv_, v);
  }
  // `ne` in ggml order (row length first).
  void Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
              std::vector<uint8_t> bytes) {
    tensors_.push_back({name, std::move(ne), type, std::move(bytes)});
  }
  absl::Status Write(const std::string& path) {
    constexpr uint64_t kAlign = 32;
    std::vector<uint8_t> head;
    Put<uint32_t>(head, 0x46554747);
    Put<uint32_t>(head, 3);
    Put<uint64_t>(head, tensors_.size());
    Put<uint64_t>(head, n_kv_);
    head.insert(head.end(), kv_.begin(), kv_.end());
    uint64_t offset = 0;
    for (const Info& t : tensors_) {
      PutString(head, t.name);
      Put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t n : t.ne) Put(head, n);
      Put(head, t.type);
      Put(head, offset);
      offset += (t.bytes.size() + kAlign - 1) / kAlign * kAlign;
    }
    head.resize((head.size() + kAlign - 1) / kAlign * kAlign, 0);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) return absl::InternalError(absl::StrCat("cannot create ", path));
    out.write(reinterpret_cast<const char*>(head.data()),
              static_cast<std::streamsize>(head.size()));
    const std::vector<char> pad(kAlign, 0);
    for (const Info& t : tensors_) {
      out.write(reinterpret_cast<const char*>(t.bytes.data()),
                static_cast<std::streamsize>(t.bytes.size()));
      out.write(pad.data(),
                static_cast<std::streamsize>((kAlign - t.bytes.size() % kAlign) % kAlign));
    }
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
    return absl::OkStatus();
  }

 private:
  struct Info {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::vector<uint8_t> bytes;
  };
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  std::vector<Info> tensors_;
};

// Values of `count` N(0, 1/fan_in) weights.
std::vector<float> Random(std::mt19937_64& rng, size_t count, int fan_in) {
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(fan_in)));
  std::vector<float> v(count);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<uint8_t> F32Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// `rows` rows of `k` values (several matrices stacked) in `type`.
absl::StatusOr<std::vector<uint8_t>> Encode(const TypeInfo& type, const std::vector<float>& v,
                                            int64_t rows, int64_t k) {
  if (type.format != nullptr) {
    ASSIGN_OR_RETURN(const QuantizedMatrix m,
                     QuantizedMatrix::Quantize(*type.format, v.data(), rows, k));
    return std::vector<uint8_t>(m.row(0), m.row(0) + m.bytes());
  }
  if (type.ggml_id == 0) return F32Bytes(v);
  std::vector<uint8_t> b(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = type.ggml_id == 30 ? F32ToBF16(v[i]) : F32ToF16(v[i]);
    std::memcpy(b.data() + 2 * i, &h, 2);
  }
  return b;
}

const char* ArchitectureOf(const std::string& model_type) {
  if (model_type == "qwen2_moe") return "qwen2moe";
  if (model_type == "qwen3_moe") return "qwen3moe";
  if (model_type == "mixtral") return "llama";
  if (model_type == "deepseek_v2" || model_type == "deepseek_v3") return "deepseek2";
  if (model_type == "glm4_moe") return "glm4moe";
  return nullptr;
}

}  // namespace

std::vector<std::string> GgufGeneratorTypes() {
  std::vector<std::string> names;
  for (const TypeInfo& t : kTypes) names.emplace_back(t.name);
  return names;
}

absl::Status WriteRandomGguf(const std::string& path, const GgufGeneratorOptions& o) {
  const ModelConfig& c = o.config;
  const char* arch = ArchitectureOf(c.model_type);
  if (arch == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("family ", c.model_type, " has no GGUF architecture here (",
                     "qwen2_moe, qwen3_moe, mixtral, deepseek_v2, deepseek_v3, glm4_moe)"));
  }
  const TypeInfo* type = nullptr;
  for (const TypeInfo& t : kTypes) {
    if (o.type == t.name) type = &t;
  }
  if (type == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GGUF type '", o.type, "' (types: ", absl::StrJoin(GgufGeneratorTypes(), ", "), ")"));
  }
  const int h = c.hidden_size, i = c.moe_intermediate_size, e = c.num_experts;
  Writer w;
  const std::string k = absl::StrCat(arch, ".");
  w.String("general.architecture", arch);
  w.String("general.name", absl::StrCat("moe-make-checkpoint ", c.model_type, " ", o.type));
  w.U32(k + "block_count", c.num_layers);
  w.U32(k + "embedding_length", h);
  w.U32(k + "expert_count", e);
  w.U32(k + "expert_used_count", c.top_k);
  const bool deepseek = std::string(arch) == "deepseek2" || std::string(arch) == "glm4moe";
  if (std::string(arch) == "llama") {
    w.U32(k + "feed_forward_length", i);
  } else {
    w.U32(k + "expert_feed_forward_length", i);
    w.Bool(k + "expert_weights_norm", c.norm_topk_prob);
  }
  if (c.model_type == "qwen2_moe")
    w.U32(k + "expert_shared_feed_forward_length", c.shared_expert_intermediate_size);
  if (deepseek) {
    w.U32(k + "feed_forward_length", c.intermediate_size);
    w.U32(k + "expert_shared_count", c.n_shared_experts);
    w.U32(k + "leading_dense_block_count", c.first_k_dense_replace);
    w.F32(k + "expert_weights_scale", c.routed_scaling_factor);
    w.U32(k + "expert_gating_func", c.scoring_func == "sigmoid" ? 2 : 1);
    w.U32(k + "expert_group_count", c.n_group);
    w.U32(k + "expert_group_used_count", c.topk_group);
  }
  std::mt19937_64 rng(o.seed);
  const auto mlp = [&](const std::string& prefix, const std::string& suffix, int inter,
                       int stack) -> absl::Status {
    const auto proj = [&](const char* p, int rows, int cols) -> absl::Status {
      const std::vector<float> v = Random(rng, static_cast<size_t>(stack) * rows * cols, cols);
      absl::StatusOr<std::vector<uint8_t>> bytes = Encode(*type, v, int64_t{stack} * rows, cols);
      if (!bytes.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, p, suffix, ": ", bytes.status().message()));
      }
      std::vector<uint64_t> ne = {uint64_t(cols), uint64_t(rows)};
      if (stack > 1 || suffix == "_exps.weight") ne.push_back(uint64_t(stack));
      w.Tensor(absl::StrCat(prefix, p, suffix), ne, type->ggml_id, *std::move(bytes));
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(proj("gate", inter, h));
    RETURN_IF_ERROR(proj("up", inter, h));
    return proj("down", h, inter);
  };
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const std::string blk = absl::StrCat("blk.", layer, ".ffn_");
    if (!c.IsMoeLayer(layer)) {
      RETURN_IF_ERROR(mlp(blk, ".weight", c.intermediate_size, 1));
      continue;
    }
    w.Tensor(blk + "gate_inp.weight", {uint64_t(h), uint64_t(e)}, 0,
             F32Bytes(Random(rng, size_t(e) * h, h)));
    RETURN_IF_ERROR(mlp(blk, "_exps.weight", i, e));
    if (c.topk_method == "noaux_tc" || c.model_type == "glm4_moe") {
      std::uniform_real_distribution<float> bias(-0.1f, 0.1f);
      std::vector<float> b(static_cast<size_t>(e));
      for (float& x : b) x = bias(rng);
      w.Tensor(absl::StrCat("blk.", layer, ".exp_probs_b.bias"), {uint64_t(e)}, 0, F32Bytes(b));
    }
    if (c.HasAlwaysOn(layer)) {
      RETURN_IF_ERROR(mlp(blk, "_shexp.weight", c.AlwaysOnIntermediate(layer), 1));
      if (c.HasSharedGate(layer)) {
        w.Tensor(blk + "gate_inp_shexp.weight", {uint64_t(h)}, 0,
                 F32Bytes(Random(rng, size_t(h), h)));
      }
    }
  }
  return w.Write(path);
}

}  // namespace moe::model
