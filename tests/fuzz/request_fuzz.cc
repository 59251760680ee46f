// tests/fuzz/request_fuzz.cc
// Request bytes as the router and a worker receive them: a ForwardRequest parsed and checked as
// MoeService.Forward does before gating (tensor codec, shape, limits, finite values), and an
// ExpertRequest decoded as a worker does (groups, row counts, hosted experts) against a small
// CPU backend. The first byte picks which.
#include <memory>
#include <vector>

#include "experts/cpu/cpu_backend.h"
#include "model/dtype.h"
#include "moe/v1/moe.pb.h"
#include "proto/tensor_codec.h"
#include "router/hidden_states_check.h"
#include "server/worker/expert_compute.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/testing/random_data.h"

namespace {

constexpr int kHidden = 16;

const moe::experts::ExpertBackend& Backend() {
  static const auto* backend = [] {
    std::vector<moe::experts::ExpertWeights> weights;
    for (int e = 0; e < 4; ++e) weights.push_back(moe::testing::RandomExpert({0, e}, kHidden, 24, e));
    return moe::experts::CpuExpertBackend::FromWeights(weights, {.threads = 1})->release();
  }();
  return *backend;
}

void Forward(const uint8_t* data, size_t size) {
  moe::v1::ForwardRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size)) || !request.has_hidden_states()) return;
  auto hidden = moe::proto::ViewTensor(request.hidden_states(), "hidden_states");
  if (!hidden.ok() || !moe::router::CheckHiddenStatesShape(*hidden, kHidden, 64).ok()) return;
  std::vector<float> x(static_cast<size_t>(hidden->num_elements()));
  moe::model::ConvertToF32(hidden->dtype(), hidden->raw_data(), x.data(), x.size());
  (void)moe::router::CheckFinite(x, kHidden);
}

void Expert(const uint8_t* data, size_t size) {
  moe::v1::ExpertRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  (void)moe::server::DecodeExpertRequest(Backend(), 64, request);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0) {
    Forward(data + 1, size - 1);
  } else {
    Expert(data + 1, size - 1);
  }
  return 0;
}
