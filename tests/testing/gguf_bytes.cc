// tests/testing/gguf_bytes.cc
#include "tests/testing/gguf_bytes.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "model/formats/weight_format.h"
#include "model/quantized_matrix.h"
#include "tests/testing/random_data.h"

namespace moe::testing {
namespace {

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

}  // namespace

void GgufBytes::Key(const std::string& key, uint32_t type) {
  PutString(kv_, key);
  Put<uint32_t>(kv_, type);
  ++n_kv_;
}

GgufBytes& GgufBytes::U32(const std::string& key, uint32_t v) {
  Key(key, 4);
  Put(kv_, v);
  return *this;
}
GgufBytes& GgufBytes::I32(const std::string& key, int32_t v) {
  Key(key, 5);
  Put(kv_, v);
  return *this;
}
GgufBytes& GgufBytes::U64(const std::string& key, uint64_t v) {
  Key(key, 10);
  Put(kv_, v);
  return *this;
}
GgufBytes& GgufBytes::F32(const std::string& key, float v) {
  Key(key, 6);
  Put(kv_, v);
  return *this;
}
GgufBytes& GgufBytes::Bool(const std::string& key, bool v) {
  Key(key, 7);
  Put<uint8_t>(kv_, v ? 1 : 0);
  return *this;
}
GgufBytes& GgufBytes::String(const std::string& key, const std::string& v) {
  Key(key, 8);
  PutString(kv_, v);
  return *this;
}
GgufBytes& GgufBytes::U32Array(const std::string& key, const std::vector<uint32_t>& v) {
  Key(key, 9);
  Put<uint32_t>(kv_, 4);
  Put<uint64_t>(kv_, v.size());
  for (uint32_t x : v) Put(kv_, x);
  return *this;
}
GgufBytes& GgufBytes::StringArray(const std::string& key, const std::vector<std::string>& v) {
  Key(key, 9);
  Put<uint32_t>(kv_, 8);
  Put<uint64_t>(kv_, v.size());
  for (const std::string& s : v) PutString(kv_, s);
  return *this;
}

GgufBytes& GgufBytes::Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                             std::vector<uint8_t> bytes) {
  tensors_.push_back({name, std::move(ne), type, std::move(bytes)});
  return *this;
}

std::vector<uint8_t> GgufBytes::Build(uint32_t alignment) {
  std::vector<uint8_t> out;
  Put<uint32_t>(out, 0x46554747);
  Put<uint32_t>(out, 3);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, n_kv_);
  out.insert(out.end(), kv_.begin(), kv_.end());
  tensor_offset_fields.clear();
  tensor_data_starts.clear();
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const Info& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t n : t.ne) Put(out, n);
    Put(out, t.type);
    tensor_offset_fields.push_back(out.size());
    Put(out, offset);
    offsets.push_back(offset);
    offset += (t.bytes.size() + alignment - 1) / alignment * alignment;
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
  data_start = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    tensor_data_starts.push_back(data_start + offsets[i]);
    out.resize(data_start + offsets[i], 0);
    out.insert(out.end(), tensors_[i].bytes.begin(), tensors_[i].bytes.end());
  }
  return out;
}

std::vector<uint8_t> TinyGgufModel(const std::string& arch, int hidden, int inter, int experts,
                                   int layers, uint32_t expert_type, bool q8_0_gate) {
  GgufBytes g;
  g.String("general.architecture", arch)
      .U32(arch + ".block_count", layers)
      .U32(arch + ".embedding_length", hidden)
      .U32(arch + ".expert_count", experts)
      .U32(arch + ".expert_used_count", 2)
      .U32(arch + ".expert_feed_forward_length", inter)
      .U32(arch + ".feed_forward_length", inter)
      .StringArray("tokenizer.ggml.tokens", {"<s>", "a", "b"});
  const auto f32_bytes = [](const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  };
  const auto experts_bytes = [&](int rows, int k, uint64_t seed) {
    if (expert_type != 8) {
      // Random blocks of another type: sized by the block table of model/gguf (F16-free bytes).
      const size_t per_row =
          expert_type == 12 ? static_cast<size_t>(k) / 256 * 144 : static_cast<size_t>(k) / 32 * 18;
      return RandomBytes(per_row * rows * experts, seed);
    }
    const std::vector<float> w =
        RandomVector(static_cast<size_t>(experts) * rows * k, seed, 1.0f / std::sqrt(float(k)));
    const model::QuantizedMatrix m =
        *model::QuantizedMatrix::Quantize(model::kQ8_0, w.data(), int64_t{experts} * rows, k);
    return std::vector<uint8_t>(m.row(0), m.row(0) + m.bytes());
  };
  for (int l = 0; l < layers; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    const std::vector<float> gate = RandomVector(static_cast<size_t>(hidden) * experts, 100 + l, 0.1f);
    if (q8_0_gate) {
      const model::QuantizedMatrix m = *model::QuantizedMatrix::Quantize(model::kQ8_0, gate.data(), experts, hidden);
      g.Tensor(blk + "ffn_gate_inp.weight", {uint64_t(hidden), uint64_t(experts)}, 8,
               std::vector<uint8_t>(m.row(0), m.row(0) + m.bytes()));
    } else {
      g.Tensor(blk + "ffn_gate_inp.weight", {uint64_t(hidden), uint64_t(experts)}, 0, f32_bytes(gate));
    }
    g.Tensor(blk + "ffn_gate_exps.weight", {uint64_t(hidden), uint64_t(inter), uint64_t(experts)},
             expert_type, experts_bytes(inter, hidden, 200 + l));
    g.Tensor(blk + "ffn_up_exps.weight", {uint64_t(hidden), uint64_t(inter), uint64_t(experts)},
             expert_type, experts_bytes(inter, hidden, 300 + l));
    g.Tensor(blk + "ffn_down_exps.weight", {uint64_t(inter), uint64_t(hidden), uint64_t(experts)},
             expert_type, experts_bytes(hidden, inter, 400 + l));
  }
  return g.Build();
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

}  // namespace moe::testing
