// experts/expert_weights.cc
#include "experts/expert_weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/fp8.h"
#include "model/tensor_names.h"

namespace moe::experts {

namespace {

// Rows [first, first + count·step) step `step` of an MXFP4 stack's expert `index` ([E, N, K/32, 16]
// blocks, [E, N, K/32] scales) as a matrix of 17-byte blocks (scale byte, then the 16 code bytes).
absl::StatusOr<model::QuantizedMatrix> Mxfp4Rows(const uint8_t* blocks, const uint8_t* scales, int64_t index,
                                                 int64_t n, int64_t k, int64_t first, int64_t count, int64_t step) {
  const int64_t groups = k / 32;
  std::vector<uint8_t> rows(static_cast<size_t>(count * groups * 17));
  for (int64_t r = 0; r < count; ++r) {
    const int64_t src = index * n + first + r * step;
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* out = rows.data() + (r * groups + g) * 17;
      out[0] = scales[src * groups + g];
      std::memcpy(out + 1, blocks + (src * groups + g) * 16, 16);
    }
  }
  return model::QuantizedMatrix::FromBytes(model::kMxfp4, count, k, rows.data());
}

std::shared_ptr<const model::QuantizedMatrix> Share(model::QuantizedMatrix m) {
  return std::make_shared<const model::QuantizedMatrix>(std::move(m));
}

// A layer's stacked expert tensor and whether it is stored transposed: `[E, A, B]` as is, or
// `[E, B, A]` when `transposed`; with `by_shape`, whichever of the two its shape is (the untransposed
// one first, as transformers' Transpose(check_dims) keeps a tensor whose shape already fits).
struct StackedSlice {
  model::Tensor tensor;
  bool transposed = false;
};
absl::StatusOr<StackedSlice> ReadStacked(const model::Checkpoint& checkpoint, const std::string& name,
                                         const std::vector<int64_t>& shape, bool transposed, bool by_shape) {
  const std::vector<int64_t> flipped = {shape[0], shape[2], shape[1]};
  if (!by_shape) {
    ASSIGN_OR_RETURN(model::Tensor t, checkpoint.GetWithShape(name, transposed ? flipped : shape));
    return StackedSlice{std::move(t), transposed};
  }
  ASSIGN_OR_RETURN(model::Tensor t, checkpoint.Get(name));
  if (t.shape() == shape) return StackedSlice{std::move(t), false};
  if (t.shape() == flipped) return StackedSlice{std::move(t), true};
  return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in checkpoint ", checkpoint.dir(), " has shape ",
                                                 model::ShapeString(t.shape()), ", expected ", model::ShapeString(shape),
                                                 " or ", model::ShapeString(flipped), " (transposed)"));
}

}  // namespace

absl::StatusOr<ExpertWeights> QuantizeExpertWeights(const ExpertWeights& w, const model::WeightFormat& format) {
  if (w.quantized()) return w;
  ExpertWeights q = w;
  const auto quantize = [&](const model::Tensor& t) -> absl::StatusOr<std::shared_ptr<const model::QuantizedMatrix>> {
    const model::Tensor f = t.ToF32();
    absl::StatusOr<model::QuantizedMatrix> m = model::QuantizedMatrix::Quantize(format, f.f32().data(), f.dim(0), f.dim(1));
    if (!m.ok()) {
      return absl::Status(m.status().code(), absl::StrCat("expert ", w.key.expert, " of layer ", w.key.layer, ": ",
                                                          m.status().message()));
    }
    return Share(*std::move(m));
  };
  ASSIGN_OR_RETURN(q.q1, quantize(w.w1));
  ASSIGN_OR_RETURN(q.q3, quantize(w.w3));
  ASSIGN_OR_RETURN(q.q2, quantize(w.w2));
  q.w1 = q.w3 = q.w2 = model::Tensor();
  return q;
}

absl::StatusOr<ExpertWeights> LoadExpertWeights(const model::Checkpoint& checkpoint, ExpertKey key,
                                                LoadOptions options) {
  const model::ModelConfig& c = checkpoint.config();
  const bool in_model = key.layer >= 0 && key.layer < c.num_layers;
  const bool routed = in_model && c.IsMoeLayer(key.layer) && key.expert >= 0 && key.expert < c.num_experts;
  const bool always_on = in_model && key.expert == c.AlwaysOnId() && c.HasAlwaysOn(key.layer);
  if (!routed && !always_on) {
    return absl::NotFoundError(absl::StrCat("expert ", key.expert, " of layer ", key.layer,
                                            " is not in the model (", c.num_layers, " layers, ", c.num_experts,
                                            " routed experts per MoE layer; id ", c.AlwaysOnId(),
                                            " is a layer's shared/dense MLP)"));
  }
  const int64_t h = c.hidden_size;
  const int64_t i = routed ? c.moe_intermediate_size : c.AlwaysOnIntermediate(key.layer);
  auto name = [&](model::Projection p) {
    return routed ? model::ExpertWeightName(c, key.layer, key.expert, p) : model::AlwaysOnWeightName(c, key.layer, p);
  };
  ExpertWeights w;
  w.key = key;
  if (routed && c.mxfp4) {
    // gpt-oss MXFP4: [E, N, K/32, 16] blocks and [E, N, K/32] scales, rows = output features.
    const int64_t e = c.num_experts;
    const auto raw = [&](const std::string& name, std::vector<int64_t> want) -> absl::StatusOr<const uint8_t*> {
      std::string dtype;
      std::vector<int64_t> shape;
      ASSIGN_OR_RETURN(const uint8_t* bytes, checkpoint.GetRaw(name, &dtype, &shape));
      if (dtype != "U8" || shape != want) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is ", dtype, model::ShapeString(shape),
                                                       ", expected U8", model::ShapeString(want)));
      }
      return bytes;
    };
    if (h % 32 != 0 || i % 32 != 0) {
      return absl::InvalidArgumentError("mxfp4 needs hidden and intermediate sizes that are multiples of 32");
    }
    const std::string gu = model::StackedGateUpName(c, key.layer), dn = model::StackedDownName(c, key.layer);
    ASSIGN_OR_RETURN(const uint8_t* gub, raw(gu + "_blocks", {e, 2 * i, h / 32, 16}));
    ASSIGN_OR_RETURN(const uint8_t* gus, raw(gu + "_scales", {e, 2 * i, h / 32}));
    ASSIGN_OR_RETURN(const uint8_t* dnb, raw(dn + "_blocks", {e, h, i / 32, 16}));
    ASSIGN_OR_RETURN(const uint8_t* dns, raw(dn + "_scales", {e, h, i / 32}));
    if (options.keep_quantized) {  // rows 2j and 2j + 1 of the gate_up stack are gate j and up j
      ASSIGN_OR_RETURN(model::QuantizedMatrix q1, Mxfp4Rows(gub, gus, key.expert, 2 * i, h, 0, i, 2));
      ASSIGN_OR_RETURN(model::QuantizedMatrix q3, Mxfp4Rows(gub, gus, key.expert, 2 * i, h, 1, i, 2));
      ASSIGN_OR_RETURN(model::QuantizedMatrix q2, Mxfp4Rows(dnb, dns, key.expert, h, i, 0, h, 1));
      w.q1 = Share(std::move(q1));
      w.q3 = Share(std::move(q3));
      w.q2 = Share(std::move(q2));
    } else {
      const model::Tensor gate_up = model::DequantizeMxfp4Expert(gub, gus, key.expert, 2 * i, h, model::DType::kBF16);  // [2I, H]
      // Rows 2j and 2j + 1 are gate j and up j (interleaved).
      const model::Tensor g3 = model::Tensor::Borrow(model::DType::kBF16, {i, 2, h}, gate_up.raw_data(), nullptr);
      w.w1 = model::Tensor::Zeros(model::DType::kBF16, {i, h});
      w.w3 = model::Tensor::Zeros(model::DType::kBF16, {i, h});
      for (int64_t r = 0; r < i; ++r) {
        std::memcpy(static_cast<uint16_t*>(w.w1.mutable_raw_data()) + r * h, g3.MatrixRows(r, 0, 1).raw_data(), h * 2);
        std::memcpy(static_cast<uint16_t*>(w.w3.mutable_raw_data()) + r * h, g3.MatrixRows(r, 1, 1).raw_data(), h * 2);
      }
      w.w2 = model::DequantizeMxfp4Expert(dnb, dns, key.expert, h, i, model::DType::kBF16);  // [H, I]
    }
  }
  if (routed && !c.names.flat_gate.empty()) {  // DBRX: three [E·I, H] stacks, views of this expert's rows
    const std::vector<int64_t> shape = {c.num_experts * i, h};
    ASSIGN_OR_RETURN(const model::Tensor gate, checkpoint.GetWithShape(model::FlatExpertsName(c, key.layer, model::Projection::kGate), shape));
    ASSIGN_OR_RETURN(const model::Tensor up, checkpoint.GetWithShape(model::FlatExpertsName(c, key.layer, model::Projection::kUp), shape));
    ASSIGN_OR_RETURN(const model::Tensor down, checkpoint.GetWithShape(model::FlatExpertsName(c, key.layer, model::Projection::kDown), shape));
    w.w1 = gate.Rows(key.expert * i, i);
    w.w3 = up.Rows(key.expert * i, i);
    // Its [I, H] rows transposed into the [H, I] down weight (a copy of this expert only).
    const model::Tensor rows = down.Rows(key.expert * i, i);
    w.w2 = model::Tensor::Borrow(rows.dtype(), {1, i, h}, rows.raw_data(), nullptr).MatrixColumnsTransposed(0, 0, h);
    return w;
  }
  if (routed && (c.mxfp4 || !c.names.stacked_gate_up.empty())) {
    const int64_t e = c.num_experts;
    const bool inter = c.names.gate_up_interleaved;
    if (!c.mxfp4) {
      // One slice of the layer's stacked tensors: views (or, transposed, copies of this expert only).
      ASSIGN_OR_RETURN(const StackedSlice gu, ReadStacked(checkpoint, model::StackedGateUpName(c, key.layer), {e, 2 * i, h},
                                                          c.names.stacked_transposed, c.names.stacked_layout_by_shape));
      ASSIGN_OR_RETURN(const StackedSlice dn, ReadStacked(checkpoint, model::StackedDownName(c, key.layer), {e, h, i},
                                                          c.names.stacked_transposed, c.names.stacked_layout_by_shape));
      if (inter && !gu.transposed) {
        return absl::UnimplementedError("interleaved gate/up is served in the transposed layout only");
      }
      const int64_t step = inter ? 2 : 1;
      w.w1 = gu.transposed ? gu.tensor.MatrixColumnsTransposed(key.expert, 0, i, step)
                           : gu.tensor.MatrixRows(key.expert, 0, i);
      w.w3 = gu.transposed ? gu.tensor.MatrixColumnsTransposed(key.expert, inter ? 1 : i, i, step)
                           : gu.tensor.MatrixRows(key.expert, i, i);
      w.w2 = dn.transposed ? dn.tensor.MatrixColumnsTransposed(key.expert, 0, h) : dn.tensor.MatrixRows(key.expert, 0, h);
    }
    if (!c.names.stacked_gate_up_bias.empty()) {
      ASSIGN_OR_RETURN(const model::Tensor gub, checkpoint.GetWithShape(model::StackedGateUpBiasName(c, key.layer), {e, 2 * i}));
      ASSIGN_OR_RETURN(const model::Tensor db, checkpoint.GetWithShape(model::StackedDownBiasName(c, key.layer), {e, h}));
      // As [E, 1, 2I]: the bias row of expert e is a 1-row matrix, split like the weights' columns.
      const model::Tensor gub3 = model::Tensor::Borrow(gub.dtype(), {e, 1, 2 * i}, gub.raw_data(), nullptr);
      const model::Tensor row1 = gub3.MatrixColumnsTransposed(key.expert, 0, i, inter ? 2 : 1);
      const model::Tensor row3 = gub3.MatrixColumnsTransposed(key.expert, inter ? 1 : i, i, inter ? 2 : 1);
      w.b1 = model::Tensor::Borrow(row1.dtype(), {i}, row1.raw_data(), nullptr).Clone();
      w.b3 = model::Tensor::Borrow(row3.dtype(), {i}, row3.raw_data(), nullptr).Clone();
      w.b2 = model::Tensor::Borrow(db.dtype(), {h},
                            static_cast<const uint8_t*>(db.raw_data()) + key.expert * h * model::DTypeSize(db.dtype()), nullptr)
                 .Clone();
    }
    w.activation = {.alpha = c.swiglu_alpha, .limit = c.swiglu_limit};
    return w;
  }
  if (always_on && c.IsMoeLayer(key.layer) && !c.names.shared_fused_gate_up.empty()) {
    ASSIGN_OR_RETURN(const model::Tensor gate_up, checkpoint.GetWeight(model::SharedFusedGateUpName(c, key.layer), {2 * i, h}));
    w.w1 = gate_up.Rows(0, i);
    w.w3 = gate_up.Rows(i, i);
    ASSIGN_OR_RETURN(w.w2, checkpoint.GetWeight(model::SharedFusedDownName(c, key.layer), {h, i}));
    return w;
  }
  if (routed && !c.names.expert_bias.empty()) {  // experts one by one with biases (GGUF gpt-oss)
    const auto bias = [&](model::Projection p, int64_t n) -> absl::StatusOr<model::Tensor> {
      ASSIGN_OR_RETURN(const model::Tensor b, checkpoint.GetWithShape(model::ExpertBiasName(c, key.layer, key.expert, p), {n}));
      return b.Clone();
    };
    ASSIGN_OR_RETURN(w.b1, bias(model::Projection::kGate, i));
    ASSIGN_OR_RETURN(w.b3, bias(model::Projection::kUp, i));
    ASSIGN_OR_RETURN(w.b2, bias(model::Projection::kDown, h));
    w.activation = {.alpha = c.swiglu_alpha, .limit = c.swiglu_limit};
  }
  if (options.keep_quantized) {
    ASSIGN_OR_RETURN(std::optional<model::QuantizedMatrix> q1, checkpoint.GetStoredQuantized(name(model::Projection::kGate), {i, h}));
    ASSIGN_OR_RETURN(std::optional<model::QuantizedMatrix> q3, checkpoint.GetStoredQuantized(name(model::Projection::kUp), {i, h}));
    ASSIGN_OR_RETURN(std::optional<model::QuantizedMatrix> q2, checkpoint.GetStoredQuantized(name(model::Projection::kDown), {h, i}));
    if (q1.has_value() && q3.has_value() && q2.has_value()) {
      w.q1 = Share(*std::move(q1));
      w.q3 = Share(*std::move(q3));
      w.q2 = Share(*std::move(q2));
      return w;
    }
  }
  ASSIGN_OR_RETURN(w.w1, checkpoint.GetWeight(name(model::Projection::kGate), {i, h}));
  ASSIGN_OR_RETURN(w.w3, checkpoint.GetWeight(name(model::Projection::kUp), {i, h}));
  ASSIGN_OR_RETURN(w.w2, checkpoint.GetWeight(name(model::Projection::kDown), {h, i}));
  return w;
}

std::vector<ExpertKey> AllExperts(const model::ModelConfig& config) {
  return ExpertRange(config, 0, config.num_experts - 1);
}

std::vector<ExpertKey> ExpertRange(const model::ModelConfig& config, int first, int last) {
  std::vector<ExpertKey> keys;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (!config.IsMoeLayer(layer)) continue;
    for (int e = first; e <= last; ++e) keys.push_back({layer, e});
  }
  return keys;
}

std::vector<ExpertKey> AlwaysOnExperts(const model::ModelConfig& config) {
  std::vector<ExpertKey> keys;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (config.HasAlwaysOn(layer)) keys.push_back({layer, config.AlwaysOnId()});
  }
  return keys;
}

}  // namespace moe::experts
