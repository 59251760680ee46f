// bench/bench_local_main.cc
// moe-bench-local: in-process benchmark (performance.md P2; on a GPU the in-process side of H4).
// Measures, in one run and on the same machine: OpenBLAS sgemm 2048³ (the practical peak), the
// expert FFN at several tokens per expert, and the in-process MoE layer at several batch sizes, on
// the CPU backend or (--backend=cuda) the CUDA one. Prints a table; --json writes one.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "experts/backend_factory.h"
#include "router/moe_layer.h"

ABSL_FLAG(int, hidden_size, 1024, "Hidden size H.");
ABSL_FLAG(int, intermediate_size, 3584, "Expert intermediate size I.");
ABSL_FLAG(int, num_experts, 8, "Experts in the layer.");
ABSL_FLAG(int, top_k, 2, "Experts per token.");
ABSL_FLAG(std::string, tokens, "1,16,256,1024", "Comma-separated token counts to measure.");
ABSL_FLAG(int, repeats, 7, "Timed repetitions per point (after one warm-up); the median is shown.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");
ABSL_FLAG(std::string, backend, "cpu", "Expert backend: cpu, or cuda (bf16 on GPU 0; P2 ratios are then not shown).");
ABSL_FLAG(std::string, cuda_gemm, "back_to_back", "--backend=cuda: back_to_back or grouped.");

namespace {

using Clock = std::chrono::steady_clock;

struct Timing {
  double median = 0, min = 0, max = 0;  // seconds
};

Timing Measure(int repeats, const std::function<void()>& fn) {
  fn();  // warm-up
  std::vector<double> s;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = Clock::now();
    fn();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return {s[s.size() / 2], s.front(), s.back()};
}

std::vector<float> Random(size_t n, uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

moe::experts::ExpertWeights RandomExpert(moe::experts::ExpertKey key, int h, int i, uint64_t seed) {
  using moe::experts::Tensor;
  return {key, Tensor::FromF32(Random(size_t(i) * h, seed, 1 / std::sqrt(float(h))), {i, h}),
          Tensor::FromF32(Random(size_t(i) * h, seed + 1, 1 / std::sqrt(float(h))), {i, h}),
          Tensor::FromF32(Random(size_t(h) * i, seed + 2, 1 / std::sqrt(float(i))), {h, i})};
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("In-process benchmark of the CPU expert FFN and MoE layer.");
  absl::ParseCommandLine(argc, argv);
  const int h = absl::GetFlag(FLAGS_hidden_size), inter = absl::GetFlag(FLAGS_intermediate_size);
  const int e = absl::GetFlag(FLAGS_num_experts), k = absl::GetFlag(FLAGS_top_k);
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  std::vector<int> tokens;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',')) {
    int v = 0;
    if (absl::SimpleAtoi(t, &v) && v > 0) tokens.push_back(v);
  }
  std::printf("moe-bench-local: H=%d I=%d E=%d top-%d, OpenBLAS %s, %d threads\n", h, inter, e, k,
              openblas_get_corename(), openblas_get_num_threads());

  // The ceiling: sgemm 2048³.
  const int n = 2048;
  std::vector<float> a = Random(size_t(n) * n, 1, 1), b = Random(size_t(n) * n, 2, 1), c(size_t(n) * n);
  const Timing gemm = Measure(std::max(3, repeats / 2), [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a.data(), n, b.data(), n, 0, c.data(), n);
  });
  const double gemm_gflops = 2.0 * n * n * n / gemm.median / 1e9;
  std::printf("\nOpenBLAS sgemm 2048^3: %.1f GFLOP/s (median of %d, %.3f-%.3f s)\n\n", gemm_gflops,
              std::max(3, repeats / 2), gemm.min, gemm.max);

  std::vector<moe::experts::ExpertWeights> weights;
  for (int x = 0; x < e; ++x) weights.push_back(RandomExpert({0, x}, h, inter, 100 + 3 * x));
  const std::string kind = absl::GetFlag(FLAGS_backend);
  auto backend = moe::experts::CreateBackendFromWeights(
      weights, {.kind = kind, .cuda_grouped_gemm = absl::GetFlag(FLAGS_cuda_gemm) == "grouped"});
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    return 1;
  }
  // Stops the benchmark on the first failed call instead of timing errors.
  auto check = [](const absl::Status& status) {
    if (status.ok()) return;
    std::fprintf(stderr, "moe-bench-local: %s\n", status.ToString().c_str());
    std::exit(1);
  };
  // The P2 ratio compares CPU work with the CPU's sgemm; on a GPU it says nothing and is not shown.
  const bool on_cpu = kind == "cpu";
  auto ratio = [&](double gflops) { return on_cpu ? absl::StrFormat("%.2f", gflops / gemm_gflops) : "-"; };
  std::vector<std::string> json_rows;
  std::printf("Expert FFN on the %s backend (SwiGLU, one expert)\n", kind.c_str());
  std::printf("%8s %12s %12s %12s %10s %16s\n", "tokens", "median ms", "tokens/s", "GFLOP/s", "P2 ratio", "spread ms");
  for (int m : tokens) {
    const std::vector<float> in = Random(size_t(m) * h, 7 + m, 1);
    std::vector<float> out(in.size());
    const std::vector<moe::experts::ExpertGroup> groups = {{{0, 0}, 0, m}};
    const Timing t = Measure(repeats, [&] { check((*backend)->Run(groups, in, absl::MakeSpan(out))); });
    const double gflops = 6.0 * m * h * inter / t.median / 1e9;
    std::printf("%8d %12.3f %12.0f %12.1f %10s %7.3f-%-8.3f\n", m, t.median * 1e3, m / t.median, gflops,
                ratio(gflops).c_str(), t.min * 1e3, t.max * 1e3);
    json_rows.push_back(absl::StrFormat(
        R"({"bench":"expert_ffn","tokens":%d,"median_s":%g,"min_s":%g,"max_s":%g,"gflops":%g,"ratio_to_sgemm":%g})",
        m, t.median, t.min, t.max, gflops, gflops / gemm_gflops));
  }

  moe::router::RoutingSpec spec;
  spec.num_experts = e;
  spec.top_k = k;
  const moe::experts::Tensor gate_weight =
      moe::experts::Tensor::FromF32(Random(size_t(e) * h, 5, 1 / std::sqrt(float(h))), {e, h});
  auto gate = moe::router::Gate::Create(spec, h, {.weight = &gate_weight});
  moe::router::MoeLayer layer(0, std::move(gate).value());
  std::printf("\nIn-process MoE layer (gate + plan + %d experts + combine)\n", e);
  std::printf("%8s %12s %12s %12s %10s %16s\n", "tokens", "median ms", "tokens/s", "GFLOP/s", "P2 ratio", "spread ms");
  for (int m : tokens) {
    const std::vector<float> x = Random(size_t(m) * h, 17 + m, 1);
    const Timing t = Measure(repeats, [&] { check(layer.Forward(x, m, **backend).status()); });
    const double gflops = (6.0 * k * h * inter + 2.0 * h * e) * m / t.median / 1e9;
    std::printf("%8d %12.3f %12.0f %12.1f %10s %7.3f-%-8.3f\n", m, t.median * 1e3, m / t.median, gflops,
                ratio(gflops).c_str(), t.min * 1e3, t.max * 1e3);
    json_rows.push_back(absl::StrFormat(
        R"({"bench":"moe_layer","tokens":%d,"median_s":%g,"min_s":%g,"max_s":%g,"gflops":%g,"ratio_to_sgemm":%g})",
        m, t.median, t.min, t.max, gflops, gflops / gemm_gflops));
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream(path) << absl::StrFormat(R"({"backend":"%s","sgemm_2048_gflops":%g,"results":[%s]})", kind,
                                           gemm_gflops, absl::StrJoin(json_rows, ","))
                        << "\n";
  }
  return 0;
}
