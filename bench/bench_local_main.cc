// bench/bench_local_main.cc
// moe-bench-local: in-process benchmark of the CPU expert FFN and MoE layer (performance.md
// C1-C4; on a GPU the in-process side of H4). Measures in one run, on the same machine and
// threads: the kernels line; a streaming-read bandwidth loop over more bytes than the caches
// hold; the expert FFN at several tokens per expert beside one oneDNN dense matmul of the same
// FLOPs and dtype; the FFN at 1 token with cold weights (cycling through experts that do not fit
// in cache) against weight bytes ÷ bandwidth; the in-process MoE layer; resident ÷ checkpoint
// bytes. Prints tables; --json writes them.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/program.h"
#include "bench/dense_peers.h"
#include "experts/factory/backend_factory.h"
#include "model/formats/weight_format.h"
#include "model/safetensors_writer.h"
#include "proto/message_memory.h"
#include "router/moe_layer.h"
#include "router/openblas_kernels.h"

ABSL_FLAG(int, hidden_size, 1024, "Hidden size H.");
ABSL_FLAG(int, intermediate_size, 3584, "Expert intermediate size I.");
ABSL_FLAG(int, num_experts, 8, "Experts in the layer.");
ABSL_FLAG(int, top_k, 2, "Experts per token.");
ABSL_FLAG(std::string, tokens, "1,4,16,64,256,1024", "Comma-separated token counts to measure.");
ABSL_FLAG(int, repeats, 7, "Timed repetitions per point (after one warm-up); the median is shown.");
ABSL_FLAG(std::string, dtype, "bf16", "Weights: bf16 (kept as bf16, computed in bf16) or f32.");
ABSL_FLAG(int, threads, 0, "Compute threads; 0 = every core.");
ABSL_FLAG(int, small_rows, -1, "Rows per expert up to which our kernels run instead of oneDNN; -1 = default.");
ABSL_FLAG(std::string, amx_kernel, "own",
          "On AMX CPUs, the bf16 product past --small_rows rows: own (ours, cpu_amx_product.h) or onednn.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");
ABSL_FLAG(std::string, quantize, "",
          "Quantize the experts at load to this format (q8_0, q4_0, q4_k, q6_k, int4) and measure them so; empty = "
          "--dtype as is.");
ABSL_FLAG(bool, int8_activations, false,
          "With --quantize=F (a block format): activations quantized to int8 at up to 128 rows, integer dot "
          "products (moe-expert --cpu_compute=int8).");
ABSL_FLAG(bool, bf16_activations, false,
          "With --quantize=F (a block format), on CPUs with AVX512_BF16: activations rounded to bf16 from 2 rows "
          "at every row count, weight rows decoded once to bf16 (moe-expert --cpu_compute=bf16).");
ABSL_FLAG(int, cold_mib, 0, "Weights cycled by the cold 1-token test, MiB; 0 = twice the last-level cache.");
ABSL_FLAG(int, stream_mib, 0, "Buffer of the streaming-read bandwidth test, MiB; 0 = 1 GiB or 3 x the last-level cache.");
ABSL_FLAG(std::string, backend, "cpu", "Expert backend: cpu, or cuda (bf16 on GPU 0; CPU ceilings are then not shown).");
ABSL_FLAG(std::string, inputs_out, "",
          "Also write the layer's gate weight and inputs (gate.weight, x.<tokens>) to this safetensors file, so "
          "that a peer (scripts/hf_peers.py --inputs) routes the same tokens to the same experts.");
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
  using moe::model::Tensor;
  return {key, Tensor::FromF32(Random(size_t(i) * h, seed, 1 / std::sqrt(float(h))), {i, h}),
          Tensor::FromF32(Random(size_t(i) * h, seed + 1, 1 / std::sqrt(float(h))), {i, h}),
          Tensor::FromF32(Random(size_t(h) * i, seed + 2, 1 / std::sqrt(float(i))), {h, i})};
}

}  // namespace


int main(int argc, char** argv) {
  const std::string blas = moe::router::EnsureOpenBlasKernels(argv);  // the gate's GEMM; may re-exec
  moe::base::InitProgram(argc, argv,
      "In-process benchmark of the CPU expert FFN and MoE layer against oneDNN's dense matmul and the\n"
      "memory bandwidth, measured in the same run.\n"
      "  moe-bench-local --dtype=bf16 --tokens=1,16,256 --json=/tmp/local.json");
  moe::proto::KeepFreedMessageMemory();  // as moe-router and moe-expert do: buffers reuse the heap
  const int h = absl::GetFlag(FLAGS_hidden_size), inter = absl::GetFlag(FLAGS_intermediate_size);
  const int e = absl::GetFlag(FLAGS_num_experts), k = absl::GetFlag(FLAGS_top_k);
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  if (dtype_name != "bf16" && dtype_name != "f32") {
    std::fprintf(stderr, "moe-bench-local: --dtype must be bf16 or f32\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_amx_kernel) != "own" && absl::GetFlag(FLAGS_amx_kernel) != "onednn") {
    std::fprintf(stderr, "moe-bench-local: --amx_kernel must be own or onednn\n");
    return 2;
  }
  const bool bf16 = dtype_name == "bf16";
  const moe::model::DType dtype = bf16 ? moe::model::DType::kBF16 : moe::model::DType::kF32;
  const int threads = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads) : omp_get_num_procs();
  std::vector<int> tokens;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',')) {
    int v = 0;
    if (absl::SimpleAtoi(t, &v) && v > 0) tokens.push_back(v);
  }
  const std::string kind = absl::GetFlag(FLAGS_backend);
  const std::string quantize = absl::GetFlag(FLAGS_quantize);
  const moe::model::WeightFormat* format = quantize.empty() ? nullptr : moe::model::FindWeightFormat(quantize);
  if (!quantize.empty() && format == nullptr) {
    std::fprintf(stderr, "moe-bench-local: --quantize must be one of %s\n",
                 absl::StrJoin(moe::model::QuantizableFormatNames(), ", ").c_str());
    return 2;
  }
  const moe::experts::BackendOptions options{.kind = kind,
                                             .threads = threads,
                                             .cpu_small_rows = absl::GetFlag(FLAGS_small_rows),
                                             .cpu_onednn_amx = absl::GetFlag(FLAGS_amx_kernel) == "onednn",
                                             .quantize = quantize,
                                             .cpu_int8_activations = absl::GetFlag(FLAGS_int8_activations),
                                             .cpu_bf16_activations = absl::GetFlag(FLAGS_bf16_activations),
                                             .cuda_grouped_gemm = absl::GetFlag(FLAGS_cuda_gemm) == "grouped"};
  auto make_expert = [&](moe::experts::ExpertKey key, uint64_t seed) {
    moe::experts::ExpertWeights w = RandomExpert(key, h, inter, seed);
    w.w1 = w.w1.ConvertTo(dtype);
    w.w3 = w.w3.ConvertTo(dtype);
    w.w2 = w.w2.ConvertTo(dtype);
    return w;
  };
  std::vector<moe::experts::ExpertWeights> weights;
  for (int x = 0; x < e; ++x) weights.push_back(make_expert({0, x}, 100 + 3 * x));
  auto backend = moe::experts::CreateBackendFromWeights(weights, options);
  if (!backend.ok()) {
    std::fprintf(stderr, "moe-bench-local: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  // With --int8_activations or --bf16_activations, the same experts on f32 activations: each FFN
  // point also prints the worst row's L2 error of the faster path against it.
  std::unique_ptr<moe::experts::ExpertBackend> f32_reference;
  const char* const fast = options.cpu_int8_activations ? "int8" : "bf16";
  if ((options.cpu_int8_activations || options.cpu_bf16_activations) && format != nullptr) {
    moe::experts::BackendOptions exact = options;
    exact.cpu_int8_activations = false;
    exact.cpu_bf16_activations = false;
    auto made = moe::experts::CreateBackendFromWeights(weights, exact);
    if (!made.ok()) {
      std::fprintf(stderr, "moe-bench-local: %s\n", made.status().ToString().c_str());
      return 1;
    }
    f32_reference = *std::move(made);
  }
  std::printf("moe-bench-local: H=%d I=%d E=%d top-%d, %s weights, %s backend: %s; gate on %s\n", h, inter, e, k,
              format != nullptr ? format->name : dtype_name.c_str(), kind.c_str(), (*backend)->device().c_str(), blas.c_str());
  // Stops the benchmark on the first failed call instead of timing errors.
  auto check = [](const absl::Status& status) {
    if (status.ok()) return;
    std::fprintf(stderr, "moe-bench-local: %s\n", status.ToString().c_str());
    std::exit(1);
  };
  const bool on_cpu = kind == "cpu";
  std::vector<std::string> json_rows;
  // An expert's stored bytes: the format's blocks when quantized.
  const double expert_bytes = format != nullptr ? 3.0 * h * inter * format->block_bytes / format->block
                                                : 3.0 * h * inter * (bf16 ? 2 : 4);
  const double checkpoint_bytes = expert_bytes * e;
  const double c4 = (*backend)->resident().bytes / checkpoint_bytes;

  // Memory bandwidth over several times the last-level cache.
  const long l3 = std::max(sysconf(_SC_LEVEL3_CACHE_SIZE), 32L << 20);
  const size_t stream_bytes = absl::GetFlag(FLAGS_stream_mib) > 0 ? size_t(absl::GetFlag(FLAGS_stream_mib)) << 20
                                                                  : std::max<size_t>(size_t{1} << 30, 3 * static_cast<size_t>(l3));
  const double bandwidth = on_cpu ? moe::bench::StreamReadBandwidth(stream_bytes, threads, 5) : 0;
  if (on_cpu) {
    std::printf("\nstreaming read: %.1f GB/s over %.0f MiB (%d threads); resident/checkpoint bytes (C4) %.3f\n",
                bandwidth / 1e9, stream_bytes / 1048576.0, threads, c4);
  }

  std::printf("\nExpert FFN (SwiGLU, one expert, weights warm) beside a oneDNN dense [m,H]x[H,3I] of the same FLOPs\n");
  std::printf("%8s %11s %10s %9s %10s %7s  %s\n", "tokens", "median ms", "tokens/s", "GFLOP/s", "dense GF/s", "C2",
              "dense kernel");
  for (int m : tokens) {
    const std::vector<float> in = Random(size_t(m) * h, 7 + m, 1);
    std::vector<float> out(in.size());
    const std::vector<moe::experts::ExpertGroup> groups = {{{0, 0}, 0, m}};
    const Timing t = Measure(repeats, [&] { check((*backend)->Run(groups, in, absl::MakeSpan(out))); });
    const double gflops = 6.0 * m * h * inter / t.median / 1e9;
    moe::bench::DenseResult dense;
    if (on_cpu) dense = moe::bench::DenseMatmul(m, h, 3 * int64_t{inter}, bf16 && format == nullptr, repeats);
    std::printf("%8d %11.3f %10.0f %9.1f %10.1f %7.2f  %s", m, t.median * 1e3, m / t.median, gflops, dense.gflops,
                on_cpu ? gflops / dense.gflops : 0.0, dense.impl.c_str());
    if (f32_reference != nullptr) {
      std::vector<float> exact(in.size());
      check(f32_reference->Run(groups, in, absl::MakeSpan(exact)));
      double worst = 0;
      for (int r = 0; r < m; ++r) {
        double num = 0, den = 0;
        for (int j = 0; j < h; ++j) {
          const double d = double(out[size_t(r) * h + j]) - exact[size_t(r) * h + j];
          num += d * d;
          den += double(exact[size_t(r) * h + j]) * exact[size_t(r) * h + j];
        }
        worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
      }
      std::printf("  %s row error (L2, worst) %.2g", fast, worst);
    }
    std::printf("\n");
    json_rows.push_back(absl::StrFormat(
        R"({"bench":"expert_ffn","tokens":%d,"median_s":%g,"min_s":%g,"max_s":%g,"gflops":%g,"dense_gflops":%g,"dense_impl":"%s"})",
        m, t.median, t.min, t.max, gflops, dense.gflops, dense.impl));
  }

  // Decode: 1 token per expert, weights cold — cycle through more experts than the caches hold.
  if (on_cpu) {
    const double cycled = absl::GetFlag(FLAGS_cold_mib) > 0 ? absl::GetFlag(FLAGS_cold_mib) * 1048576.0 : 2.0 * l3;
    const int cold = std::max(4, static_cast<int>(std::ceil(cycled / expert_bytes)) + 1);
    std::vector<moe::experts::ExpertWeights> many;
    // One expert's values for all, each in memory of its own (packed, or its quantized bytes
    // copied), which is what the caches see: drawing 2 x L3 of normal samples took most of a
    // small-shape run.
    moe::experts::ExpertWeights base = make_expert({1, 0}, 900);
    if (format != nullptr) base = moe::experts::QuantizeExpertWeights(base, *format).value();
    const auto copy = [](const std::shared_ptr<const moe::model::QuantizedMatrix>& q) {
      return std::make_shared<const moe::model::QuantizedMatrix>(
          moe::model::QuantizedMatrix::FromBytes(q->format(), q->n(), q->k(), q->row(0)).value());
    };
    for (int x = 0; x < cold; ++x) {
      many.push_back(base);
      many.back().key = {1, x};
      if (format != nullptr) {
        many.back().q1 = copy(base.q1);
        many.back().q3 = copy(base.q3);
        many.back().q2 = copy(base.q2);
      }
    }
    auto cold_backend = moe::experts::CreateBackendFromWeights(many, options);
    check(cold_backend.status());
    many.clear();
    const std::vector<float> in = Random(h, 3, 1);
    std::vector<float> out(h);
    int next = 0;
    std::vector<double> s;
    for (int i = 0; i < 3 * cold; ++i) {
      const auto t0 = Clock::now();
      check((*cold_backend)->Run({{{1, next}, 0, 1}}, in, absl::MakeSpan(out)));
      if (i >= cold) s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      next = (next + 1) % cold;
    }
    std::sort(s.begin(), s.end());
    const double median = s[s.size() / 2], floor = expert_bytes / bandwidth;
    std::printf("\n1 token per expert, weights cold (%d experts, %.0f MiB cycled): %.3f ms; weight bytes / bandwidth "
                "%.3f ms; C3 = %.2f (%.1f GB/s)\n",
                cold, cold * expert_bytes / 1048576.0, median * 1e3, floor * 1e3, median / floor,
                expert_bytes / median / 1e9);
    json_rows.push_back(absl::StrFormat(
        R"({"bench":"ffn_cold_1","experts":%d,"median_s":%g,"floor_s":%g,"c3":%g,"bandwidth_gbs":%g})", cold,
        median, floor, median / floor, bandwidth / 1e9));
  }

  moe::router::RoutingSpec spec;
  spec.num_experts = e;
  spec.top_k = k;
  const moe::model::Tensor gate_weight =
      moe::model::Tensor::FromF32(Random(size_t(e) * h, 5, 1 / std::sqrt(float(h))), {e, h});
  auto gate = moe::router::Gate::Create(spec, h, {.weight = &gate_weight});
  moe::router::MoeLayer layer(0, std::move(gate).value());
  // Every expert's weights as warm as the peer's (HF's block, measured the same way): one
  // forward of the largest batch first, after the cold test above flushed the caches.
  check(layer.Forward(Random(size_t(tokens.empty() ? 1 : tokens.back()) * h, 99, 1),
                      tokens.empty() ? 1 : tokens.back(), **backend)
            .status());
  std::printf("\nIn-process MoE layer (gate + plan + %d experts + combine, weights warm)\n", e);
  std::printf("%8s %11s %10s %9s %16s %8s\n", "tokens", "median ms", "tokens/s", "GFLOP/s", "spread ms", "experts");
  std::vector<std::vector<float>> inputs;  // kept alive for --inputs_out
  for (int m : tokens) {
    const std::vector<float>& x = inputs.emplace_back(Random(size_t(m) * h, 17 + m, 1));
    // How many experts the batch touches: in the memory-bound sizes, the bytes it reads.
    moe::router::Routing routing;
    check(layer.Forward(x, m, **backend, &routing).status());
    std::vector<bool> used(e, false);
    for (int32_t expert : routing.experts) used[expert] = true;
    const int touched = static_cast<int>(std::count(used.begin(), used.end(), true));
    const Timing t = Measure(repeats, [&] { check(layer.Forward(x, m, **backend).status()); });
    const double gflops = (6.0 * k * h * inter + 2.0 * h * e) * m / t.median / 1e9;
    std::printf("%8d %11.3f %10.0f %9.1f %7.3f-%-8.3f %8d\n", m, t.median * 1e3, m / t.median, gflops, t.min * 1e3,
                t.max * 1e3, touched);
    json_rows.push_back(absl::StrFormat(
        R"({"bench":"moe_layer","tokens":%d,"median_s":%g,"min_s":%g,"max_s":%g,"gflops":%g,"experts_touched":%d})",
        m, t.median, t.min, t.max, gflops, touched));
  }
  if (const std::string path = absl::GetFlag(FLAGS_inputs_out); !path.empty()) {
    moe::model::SafetensorsWriter writer;
    writer.Add("gate.weight", gate_weight);
    for (size_t i = 0; i < tokens.size(); ++i) {
      writer.Add(absl::StrCat("x.", tokens[i]), moe::model::Tensor::FromF32(inputs[i], {tokens[i], h}));
    }
    check(writer.Write(path));
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream(path) << absl::StrFormat(
                               R"({"backend":"%s","dtype":"%s","device":"%s","bandwidth_gbs":%g,"c4":%g,"results":[%s]})",
                               kind, dtype_name, (*backend)->device(), bandwidth / 1e9, c4,
                               absl::StrJoin(json_rows, ","))
                        << "\n";
  }
  return 0;
}
