// bench/metrics_bench_main.cc
// moe-bench-metrics: the cost of recording metrics on the hot path, per call, measured on the
// real RouterMetrics / ExpertMetrics (prometheus-cpp) with a Mixtral-like routing result.
// Complements `moe-cluster --nometrics` + moe-bench (end to end); see docs/BENCHMARKS.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "absl/flags/flag.h"
#include "base/program.h"
#include "experts/expert_weights.h"
#include "model/model_config.h"
#include "server/router/router_metrics.h"
#include "server/worker/expert_metrics.h"

ABSL_FLAG(int, calls, 200000, "Calls timed per metric operation.");

int main(int argc, char** argv) {
  moe::base::InitProgram(argc, argv,
                         "The cost per call of recording router and worker metrics.\n"
                         "  moe-bench-metrics --calls=100000");
  const int calls = std::max(1, absl::GetFlag(FLAGS_calls));
  const auto config = moe::model::DefaultConfig("mixtral", 4096, 14336, 8, 2, 32).value();
  prometheus::Registry registry;
  moe::server::RouterMetrics router(registry, config, {"expert-0:50061", "expert-1:50061"});
  moe::server::ExpertMetrics worker(registry, moe::experts::AllExperts(config), config.AlwaysOnId());
  moe::router::Routing r;  // one token, top-2 of 8
  r.num_tokens = 1;
  r.num_experts = 8;
  r.experts = {1, 5};
  r.weights = {0.6f, 0.4f};
  r.token_offsets = {0, 2};
  r.dropped.assign(8, 0);
  r.rerouted.assign(8, 0);
  r.score_sums.assign(8, 0.125);
  auto measure = [calls](const char* name, const std::function<void()>& fn) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) fn();
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    std::printf("%-34s %8.1f ns/call\n", name, ns / calls);
    return ns / calls;
  };
  std::printf("moe-bench-metrics: %d calls each (prometheus-cpp)\n", calls);
  double per_forward = 0;
  per_forward += measure("router RecordRouting (top-2)", [&] { router.RecordRouting(3, r); });
  per_forward += measure("router RecordRequest", [&] {
    router.RecordRequest(moe::server::RpcMethod::kForward, grpc::StatusCode::OK, absl::Microseconds(300));
  });
  per_forward += measure("router RecordGating", [&] { router.RecordGating(absl::Microseconds(10)); });
  per_forward += 2 * measure("router RecordDispatch (per worker)", [&] { router.RecordDispatch(0, absl::Microseconds(100)); });
  per_forward += 4 * measure("router SetInflight (2 per worker)", [&] { router.SetInflight(0, 1); });
  per_forward += 2 * measure("worker RecordRows (per group)", [&] { worker.RecordRows(3, 1); });
  per_forward += 2 * measure("worker RecordStep", [&] { worker.RecordStep(absl::Microseconds(50), 1); });
  per_forward += 2 * measure("worker RecordRequest", [&] { worker.RecordRequest(grpc::StatusCode::OK); });
  per_forward += 4 * measure("worker SetQueueDepth", [&] { worker.SetQueueDepth(1); });
  std::printf("%-34s %8.1f ns\n", "one top-2 Forward over 2 workers", per_forward);
  return 0;
}
