// tools/routing_study_main.cc
// moe-routing-study: on skewed synthetic traffic (a few hot experts), how each routing policy
// balances load, how much it drops, and how much of the token-choice top-k gate affinity it
// keeps. Prints the table of docs/ROUTING.md. Uses only the router library (no servers).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "base/program.h"
#include "router/gate.h"
#include "router/openblas_kernels.h"

ABSL_FLAG(int, experts, 16, "Experts E.");
ABSL_FLAG(int, top_k, 2, "Experts per token k.");
ABSL_FLAG(int, hidden, 64, "Hidden size.");
ABSL_FLAG(int, tokens, 2048, "Tokens per step.");
ABSL_FLAG(int, hot, 3, "Number of hot experts the traffic leans towards.");
ABSL_FLAG(std::vector<std::string>, skews, std::vector<std::string>({"0", "0.25", "0.5"}),
          "Skew strengths to study (0 = unskewed): how far the traffic leans towards the hot experts.");
ABSL_FLAG(uint64_t, seed, 7, "Seed of the gate and the traffic.");

namespace {

using moe::router::Gate;
using moe::router::Routing;
using moe::router::RoutingSpec;

struct Row {
  std::string name;
  RoutingSpec spec;
};

}  // namespace

int main(int argc, char** argv) {
  moe::router::EnsureOpenBlasKernels(argv);  // the gate's GEMM off OpenBLAS's SSE3 fallback; may re-exec
  moe::base::InitProgram(argc, argv,
      "Compares routing policies on skewed synthetic traffic.\n"
      "  moe-routing-study --experts=64 --top_k=8 --tokens=4096 --hot=4");
  const int e = absl::GetFlag(FLAGS_experts), k = absl::GetFlag(FLAGS_top_k), h = absl::GetFlag(FLAGS_hidden);
  const int n = absl::GetFlag(FLAGS_tokens), hot = std::min(absl::GetFlag(FLAGS_hot), e);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::normal_distribution<float> normal;
  std::vector<float> w(size_t(e) * h);
  for (float& v : w) v = normal(rng) / std::sqrt(float(h));
  const moe::model::Tensor weight = moe::model::Tensor::FromF32(w, {e, h});

  RoutingSpec base;
  base.num_experts = e;
  base.top_k = k;
  auto with = [&](auto change) {
    RoutingSpec s = base;
    change(s);
    return s;
  };
  const std::vector<Row> rows = {
      {"token choice top-k (no capacity)", base},
      {"  + capacity 1.0, drop", with([](RoutingSpec& s) { s.capacity_factor = 1.0f; })},
      {"  + capacity 1.25, drop", with([](RoutingSpec& s) { s.capacity_factor = 1.25f; })},
      {"  + capacity 1.0, reroute", with([](RoutingSpec& s) {
         s.capacity_factor = 1.0f;
         s.overflow = RoutingSpec::Overflow::kReroute;
       })},
      {"  + capacity 1.25, reroute", with([](RoutingSpec& s) {
         s.capacity_factor = 1.25f;
         s.overflow = RoutingSpec::Overflow::kReroute;
       })},
      {"noisy top-k (std 1)", with([](RoutingSpec& s) {
         s.noise_std = 1.0f;
         s.noise_seed = 1;
       })},
      {"expert choice (C = n·k/E)", with([](RoutingSpec& s) { s.policy = RoutingSpec::Policy::kExpertChoice; })},
      {"balanced assignment (k = 1)", with([](RoutingSpec& s) { s.policy = RoutingSpec::Policy::kBalanced; })},
      {"dense (k = E)", with([&](RoutingSpec& s) { s.top_k = e; })},
  };

  std::printf("moe-routing-study: E=%d k=%d H=%d, %d tokens, %d hot experts, seed %lu\n", e, k, h, n, hot,
              static_cast<unsigned long>(absl::GetFlag(FLAGS_seed)));
  for (const std::string& skew_text : absl::GetFlag(FLAGS_skews)) {
    float skew = 0;
    if (!absl::SimpleAtof(skew_text, &skew)) {
      std::fprintf(stderr, "moe-routing-study: --skews: '%s' is not a number\n", skew_text.c_str());
      return 2;
    }
    // Traffic: N(0, 1) plus `skew` times the mean direction of the hot experts' gate rows.
    std::vector<float> lean(h, 0.0f);
    for (int x = 0; x < hot; ++x) {
      for (int j = 0; j < h; ++j) lean[j] += w[x * h + j];
    }
    float norm = 0;
    for (float v : lean) norm += v * v;
    norm = std::sqrt(norm);
    std::vector<float> tokens(size_t(n) * h);
    for (int t = 0; t < n; ++t) {
      for (int j = 0; j < h; ++j) tokens[t * h + j] = normal(rng) + skew * std::sqrt(float(h)) * lean[j] / norm;
    }
    // The yardstick: the gate probability mass token-choice top-k gives each token.
    auto top_gate = Gate::Create(base, h, {.weight = &weight});
    const std::vector<float> scores = *top_gate->Scores(tokens, n);
    const Routing top = *top_gate->Route(tokens, n);
    double top_affinity = 0;
    for (int t = 0; t < n; ++t) {
      for (int x : top.ExpertsOf(t)) top_affinity += scores[t * e + x];
    }
    std::printf("\nskew %.2f\n%-34s %14s %10s %14s %14s\n", skew, "policy", "balancedness", "drop rate",
                "affinity kept", "tokens w/o expert");
    for (const Row& row : rows) {
      auto gate = Gate::Create(row.spec, h, {.weight = &weight});
      const Routing r = *gate->Route(tokens, n);
      std::vector<int64_t> load(e, 0);
      double affinity = 0;
      int64_t orphans = 0, dropped = 0;
      for (int t = 0; t < n; ++t) {
        if (r.ExpertsOf(t).empty()) ++orphans;
        for (int x : r.ExpertsOf(t)) {
          ++load[x];
          affinity += scores[t * e + x];  // the clean gate score, also for noisy top-k
        }
      }
      for (int64_t d : r.dropped) dropped += d;
      const double mean = double(r.num_pairs()) / e;
      const double max_load = double(*std::max_element(load.begin(), load.end()));
      std::printf("%-34s %14.3f %9.1f%% %13.1f%% %13.1f%%\n", row.name.c_str(), max_load > 0 ? mean / max_load : 0.0,
                  100.0 * dropped / (double(n) * row.spec.top_k), 100.0 * affinity / top_affinity,
                  100.0 * orphans / n);
    }
  }
  return 0;
}
