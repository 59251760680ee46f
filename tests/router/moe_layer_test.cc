// tests/router/moe_layer_test.cc
// MoeLayer and MoeModel against a Mixtral sparse-MoE block written independently here, in
// double precision, from routing.md (softmax → top-k → renormalise → Σ wᵢ·Eᵢ(x)).
#include "router/moe_layer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "experts/cpu/cpu_backend.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/checkpoint_generator.h"
#include "model/tensor_names.h"
#include "router/moe_model.h"
#include "tests/testing/error_measures.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

using ::moe::testing::StatusIs;
using model::Tensor;

struct Reference {
  std::vector<double> out;
  std::vector<std::vector<int>> chosen;
};

Reference MixtralBlock(const Tensor& gate_w, const std::vector<experts::ExpertWeights>& experts_w,
                       const std::vector<float>& x, int n, int k) {
  const Tensor g = gate_w.ToF32();
  const int e = static_cast<int>(g.dim(0)), h = static_cast<int>(g.dim(1));
  Reference ref;
  ref.out.assign(size_t(n) * h, 0.0);
  for (int t = 0; t < n; ++t) {
    const float* xt = &x[size_t(t) * h];
    std::vector<double> p(e);
    for (int i = 0; i < e; ++i) {
      for (int j = 0; j < h; ++j) p[i] += double(g.f32()[i * h + j]) * xt[j];
    }
    const double mx = *std::max_element(p.begin(), p.end());
    double z = 0;
    for (double& v : p) z += (v = std::exp(v - mx));
    for (double& v : p) v /= z;
    std::vector<int> order(e);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    order.resize(k);
    double norm = 0;
    for (int i : order) norm += p[i];
    for (int i : order) {
      const Tensor w1 = experts_w[i].w1.ToF32(), w3 = experts_w[i].w3.ToF32(), w2 = experts_w[i].w2.ToF32();
      const int inter = static_cast<int>(w1.dim(0));
      std::vector<double> act(inter);
      for (int a = 0; a < inter; ++a) {
        double gg = 0, uu = 0;
        for (int j = 0; j < h; ++j) {
          gg += double(w1.f32()[a * h + j]) * xt[j];
          uu += double(w3.f32()[a * h + j]) * xt[j];
        }
        act[a] = gg / (1 + std::exp(-gg)) * uu;
      }
      for (int j = 0; j < h; ++j) {
        double y = 0;
        for (int a = 0; a < inter; ++a) y += double(w2.f32()[j * inter + a]) * act[a];
        ref.out[size_t(t) * h + j] += p[i] / norm * y;
      }
    }
    ref.chosen.push_back(order);
  }
  return ref;
}

TEST(MoeLayerTest, MatchesIndependentMixtralBlock) {
  const int h = 48, inter = 80, e = 8, k = 2, layer = 3;
  std::vector<experts::ExpertWeights> weights;
  for (int i = 0; i < e; ++i) weights.push_back(testing::RandomExpert({layer, i}, h, inter, 50 + i));
  ASSERT_OK_AND_ASSIGN(auto backend, experts::CpuExpertBackend::FromWeights(weights, {}));
  const Tensor gate_w = Tensor::FromF32(testing::RandomVector(e * h, 77, 1.0f / std::sqrt(float(h))), {e, h});
  RoutingSpec spec;
  spec.num_experts = e;
  spec.top_k = k;
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, h, {.weight = &gate_w}));
  MoeLayer moe(layer, std::move(gate));
  for (int n : {1, 7, 64}) {
    const std::vector<float> x = testing::RandomVector(size_t(n) * h, 1000 + n);
    Routing routing;
    ASSERT_OK_AND_ASSIGN(std::vector<float> out, moe.Forward(x, n, *backend, &routing));
    const Reference ref = MixtralBlock(gate_w, weights, x, n, k);
    EXPECT_LE(testing::MaxRelError(out, ref.out), 1e-5) << n << " tokens";
    for (int t = 0; t < n; ++t) {
      EXPECT_EQ(std::vector<int>(routing.ExpertsOf(t).begin(), routing.ExpertsOf(t).end()),
                ref.chosen[t]) << "token " << t;
    }
  }
}

TEST(MoeLayerTest, MissingExpertIsNotFound) {
  const int h = 8, e = 4;
  std::vector<experts::ExpertWeights> weights = {testing::RandomExpert({0, 0}, h, 8, 1)};
  ASSERT_OK_AND_ASSIGN(auto backend, experts::CpuExpertBackend::FromWeights(weights, {}));
  RoutingSpec spec;
  spec.num_experts = e;
  spec.top_k = e;  // every token needs every expert, and the backend has only expert 0
  const Tensor gate_w = Tensor::FromF32(testing::RandomVector(e * h, 2), {e, h});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, h, {.weight = &gate_w}));
  MoeLayer moe(0, std::move(gate));
  EXPECT_THAT(moe.Forward(testing::RandomVector(2 * h, 3), 2, *backend),
              StatusIs(absl::StatusCode::kNotFound, "is not hosted"));
}

TEST(MoeModelTest, LoadsEveryLayerFromACheckpointAndMatchesTheReference) {
  const std::string dir = testing::MakeTempDir("model");
  ASSERT_OK(model::WriteRandomCheckpoint(
      dir, {.config = testing::SmallConfig(32, 40, 4, 2, 3), .dtype = model::DType::kBF16, .num_shards = 2, .seed = 3}));
  ASSERT_OK_AND_ASSIGN(auto ckpt, model::Checkpoint::Open(dir));
  ASSERT_OK_AND_ASSIGN(auto model, MoeModel::Create(*ckpt));
  EXPECT_EQ(model->num_layers(), 3);
  EXPECT_THAT(model->layer(3), StatusIs(absl::StatusCode::kNotFound, "layer 3 not found"));
  EXPECT_THAT(model->layer(-1), StatusIs(absl::StatusCode::kNotFound, "layer -1"));
  // The checkpoint is bf16: f32 compute matches the f32 reference to 1e-5, bf16 compute (the
  // default: activations rounded to bf16) to bf16's precision.
  ASSERT_OK_AND_ASSIGN(auto backend, experts::CpuExpertBackend::Create(*ckpt, experts::AllExperts(ckpt->config()),
                                                                       {.f32_compute = true}));
  ASSERT_OK_AND_ASSIGN(auto bf16_backend,
                       experts::CpuExpertBackend::Create(*ckpt, experts::AllExperts(ckpt->config()), {}));
  const std::vector<float> x = testing::RandomVector(5 * 32, 9);
  for (int layer = 0; layer < 3; ++layer) {
    ASSERT_OK_AND_ASSIGN(const MoeLayer* moe, model->layer(layer));
    ASSERT_OK_AND_ASSIGN(std::vector<float> out, moe->Forward(x, 5, *backend));
    ASSERT_OK_AND_ASSIGN(std::vector<float> out_bf16, moe->Forward(x, 5, *bf16_backend));
    std::vector<experts::ExpertWeights> weights;
    for (int i = 0; i < 4; ++i) {
      ASSERT_OK_AND_ASSIGN(auto w, experts::LoadExpertWeights(*ckpt, {layer, i}));
      weights.push_back(std::move(w));
    }
    ASSERT_OK_AND_ASSIGN(Tensor gate_w, ckpt->Get(model::GateWeightName(ckpt->config(), layer)));
    EXPECT_LE(testing::MaxRelError(out, MixtralBlock(gate_w, weights, x, 5, 2).out), 1e-5);
    EXPECT_LE(testing::MaxRelError(out_bf16, MixtralBlock(gate_w, weights, x, 5, 2).out), 1e-2);
  }
}

}  // namespace
}  // namespace moe::router

namespace moe::router {
namespace {

TEST(MoeLayerTest, DenseModeEqualsTheWeightedSumOverAllExperts) {
  const int h = 24, e = 4, n = 5;
  std::vector<experts::ExpertWeights> weights;
  for (int i = 0; i < e; ++i) weights.push_back(testing::RandomExpert({0, i}, h, 16, 300 + i));
  ASSERT_OK_AND_ASSIGN(auto backend, experts::CpuExpertBackend::FromWeights(weights, {}));
  const Tensor gate_w = Tensor::FromF32(testing::RandomVector(e * h, 301), {e, h});
  RoutingSpec spec;
  spec.num_experts = e;
  spec.top_k = 2;
  spec.norm_topk_prob = false;
  RoutingOverrides dense;
  dense.dense = true;
  ASSERT_OK(dense.ApplyTo(spec));
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, h, {.weight = &gate_w}));
  MoeLayer moe(0, std::move(gate));
  const std::vector<float> x = testing::RandomVector(n * h, 302);
  ASSERT_OK_AND_ASSIGN(std::vector<float> out, moe.Forward(x, n, *backend));
  // Σ_e softmax(z)_e · E_e(x), each expert run alone over the whole batch.
  ASSERT_OK_AND_ASSIGN(std::vector<float> p, moe.gate().Scores(x, n));
  std::vector<double> expected(n * h, 0.0);
  for (int i = 0; i < e; ++i) {
    std::vector<float> y(n * h);
    ASSERT_OK(backend->Run({{{0, i}, 0, n}}, x, absl::MakeSpan(y)));
    for (int t = 0; t < n; ++t) {
      for (int j = 0; j < h; ++j) expected[t * h + j] += double(p[t * e + i]) * y[t * h + j];
    }
  }
  EXPECT_LE(testing::MaxRelError(out, expected), 1e-5);
}

}  // namespace
}  // namespace moe::router
