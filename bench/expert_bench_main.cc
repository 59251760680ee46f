// bench/expert_bench_main.cc
// moe-expert-bench: one worker step (G experts × m tokens each) on an expert backend, per shape:
// achieved TFLOP/s (6·G·m·H·I per step), and on a GPU the ratio to one cuBLAS dense GEMM of the
// same FLOPs (performance.md H1) and the weight bytes read per second against a device-to-device
// copy (H3), both measured in the same run. On a GPU the step's products are timed with device
// events (ExpertBackend::LastStepTimes), as the dense GEMM is, and the host staging of the f32
// activations (both ways) is shown beside them, with the wall time of the whole Run; on the CPU
// the wall time of Run is all there is. On a GPU both ways of issuing a step's products run side by side (back to back,
// grouped GEMM; cuda::CudaOptions) so the table says which wins where. --json writes the rows.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/program.h"
#include "experts/cuda/cuda_backend.h"
#include "experts/factory/backend_factory.h"

ABSL_FLAG(std::string, backend, "", "cuda or cpu; default: cuda where a GPU is usable, else cpu.");
ABSL_FLAG(std::vector<std::string>, dims, std::vector<std::string>({"mixtral", "deepseek"}),
          "Shapes: mixtral (H 4096, I 14336), deepseek (H 7168, I 2048), or HxI like 1024x3584.");
ABSL_FLAG(std::string, tokens, "", "Tokens per expert; default 1..4096 on a GPU, 1,4,16,64 on the CPU.");
ABSL_FLAG(int, groups, 0, "Experts per step G; default 8 on a GPU, 2 on the CPU.");
ABSL_FLAG(std::string, dtype, "bf16", "Weights/activations on the GPU: bf16, f16 or f32 (CPU computes f32).");
ABSL_FLAG(std::vector<std::string>, cuda_gemm, std::vector<std::string>({"back_to_back", "grouped"}),
          "GPU: the ways of issuing a step's products to compare (back_to_back, grouped).");
ABSL_FLAG(int, repeats, 10, "Timed repetitions per point (after one warm-up); the median is shown.");
ABSL_FLAG(int, device, 0, "CUDA device.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");

namespace {

using moe::model::DType;
using moe::experts::ExpertBackend;
using moe::experts::ExpertWeights;
using moe::model::Tensor;

// Cheap deterministic fill in [-scale, scale): the weights' values do not change the timings.
Tensor Filled(int64_t rows, int64_t cols, uint64_t seed, float scale) {
  Tensor t = Tensor::Zeros(DType::kF32, {rows, cols});
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& v : t.mutable_f32()) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v = scale * (static_cast<float>(x >> 40) / float(1 << 23) - 1.0f);
  }
  return t;
}

bool ParseDims(const std::string& dims, int64_t& h, int64_t& inter) {
  if (dims == "mixtral") return h = 4096, inter = 14336, true;
  if (dims == "deepseek") return h = 7168, inter = 2048, true;
  std::vector<std::string> parts = absl::StrSplit(dims, 'x');
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], &h) && absl::SimpleAtoi(parts[1], &inter) && h > 0 &&
         inter > 0;
}

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;  // wall time of Run
  bool on_device = false;                        // the backend reported device times:
  double compute_ms = 0, staging_ms = 0;         // their medians (products; staging in + out)
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median (and spread) of `repeats` wall times of one Run after a warm-up, and of the device's
// own times where the backend has them.
absl::StatusOr<Timing> TimeRun(ExpertBackend& b, absl::Span<const moe::experts::ExpertGroup> step,
                               absl::Span<const float> in, absl::Span<float> out, int repeats) {
  std::vector<double> ms, compute, staging;
  for (int r = 0; r <= repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    if (absl::Status s = b.Run(step, in, out); !s.ok()) return s;
    if (r == 0) continue;
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    if (const auto device = b.LastStepTimes(); device.has_value()) {
      compute.push_back(device->compute_ms);
      staging.push_back(device->stage_in_ms + device->stage_out_ms);
    }
  }
  Timing t{.median_ms = Median(ms), .min_ms = *std::min_element(ms.begin(), ms.end()),
           .max_ms = *std::max_element(ms.begin(), ms.end())};
  if (compute.size() == ms.size()) {
    t.on_device = true;
    t.compute_ms = Median(compute);
    t.staging_ms = Median(staging);
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  moe::base::InitProgram(argc, argv,
      "Benchmarks an expert backend per shape against the device's own peaks.\n"
      "  moe-expert-bench --backend=cuda --json=/tmp/h1.json");
  const int device = absl::GetFlag(FLAGS_device);
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  std::string backend = absl::GetFlag(FLAGS_backend);
  const absl::StatusOr<std::string> gpu = moe::experts::CudaDevice(device);
  if (backend.empty()) backend = gpu.ok() ? "cuda" : "cpu";
  const bool on_gpu = backend == "cuda";
  if (on_gpu && !gpu.ok()) {
    std::fprintf(stderr, "moe-expert-bench: %s\n", gpu.status().ToString().c_str());
    return 1;
  }
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  const std::optional<DType> dtype = moe::model::ParseDType(absl::AsciiStrToUpper(dtype_name));
  if (!dtype.has_value()) {
    std::fprintf(stderr, "moe-expert-bench: --dtype: '%s' is not bf16, f16 or f32\n", dtype_name.c_str());
    return 2;
  }
  // The variants measured side by side: both GEMM modes on a GPU, the one CPU backend otherwise.
  std::vector<std::string> modes = on_gpu ? absl::GetFlag(FLAGS_cuda_gemm) : std::vector<std::string>{"cpu"};
  for (const std::string& mode : modes) {
    if (on_gpu && mode != "back_to_back" && mode != "grouped") {
      std::fprintf(stderr, "moe-expert-bench: --cuda_gemm: '%s' is not back_to_back or grouped\n", mode.c_str());
      return 2;
    }
  }
  const int groups = absl::GetFlag(FLAGS_groups) > 0 ? absl::GetFlag(FLAGS_groups) : on_gpu ? 8 : 2;
  std::string tokens_text = absl::GetFlag(FLAGS_tokens);
  if (tokens_text.empty()) tokens_text = on_gpu ? "1,4,16,64,256,512,1024,4096" : "1,4,16,64";
  std::vector<int64_t> tokens;
  for (absl::string_view t : absl::StrSplit(tokens_text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(t, &v) || v <= 0) {
      std::fprintf(stderr, "moe-expert-bench: --tokens: '%s' is not a positive count\n", std::string(t).c_str());
      return 2;
    }
    tokens.push_back(v);
  }
  std::printf("moe-expert-bench: backend %s on %s, %d experts per step, %s\n", backend.c_str(),
              on_gpu ? gpu->c_str() : "CPU (OpenBLAS, f32 compute)", groups, on_gpu ? dtype_name.c_str() : "f32");
  if (!on_gpu) std::printf("  (GPU: %s)\n", gpu.ok() ? gpu->c_str() : std::string(gpu.status().message()).c_str());
  double copy_gbps = 0;
  if (on_gpu) {
    auto copy = moe::experts::cuda::DeviceCopyGBps(device, int64_t{1} << 30, repeats);
    if (!copy.ok()) {
      std::fprintf(stderr, "moe-expert-bench: device copy: %s\n", copy.status().ToString().c_str());
      return 1;
    }
    copy_gbps = *copy;
    std::printf("  device-to-device copy: %.0f GB/s (read + write)\n", copy_gbps);
  }
  std::vector<std::string> json_rows;
  for (const std::string& dims : absl::GetFlag(FLAGS_dims)) {
    int64_t h = 0, inter = 0;
    if (!ParseDims(dims, h, inter)) {
      std::fprintf(stderr, "moe-expert-bench: --dims: '%s' is not mixtral, deepseek or HxI\n", dims.c_str());
      return 2;
    }
    std::vector<ExpertWeights> weights;
    for (int e = 0; e < groups; ++e) {
      weights.push_back({{0, e}, Filled(inter, h, 3 * e + 1, 0.02f), Filled(inter, h, 3 * e + 2, 0.02f),
                         Filled(h, inter, 3 * e + 3, 0.02f)});
    }
    std::vector<std::unique_ptr<ExpertBackend>> backends;
    for (const std::string& mode : modes) {
      auto b = moe::experts::CreateBackendFromWeights(
          weights, {.kind = backend, .device = device, .cuda_dtype = *dtype, .cuda_grouped_gemm = mode == "grouped"});
      if (!b.ok()) {
        std::fprintf(stderr, "moe-expert-bench: %s\n", b.status().ToString().c_str());
        return 1;
      }
      backends.push_back(*std::move(b));
    }
    weights.clear();
    std::printf("\n%s: H=%ld I=%ld (TFLOP/s, H1 and H3 over the %s)\n%-13s %8s %10s %14s %10s %10s %10s %10s %12s %10s\n",
                dims.c_str(), static_cast<long>(h), static_cast<long>(inter),
                on_gpu ? "products' device time" : "wall time of Run", "mode", "tokens", "wall ms", "spread ms",
                "device ms", "staging ms", "TFLOP/s", "H1 ratio", "weight GB/s", "H3 ratio");
    const double weight_bytes = double(groups) * 3 * h * inter * (on_gpu ? moe::model::DTypeSize(*dtype) : 4);
    for (int64_t m : tokens) {
      const Tensor in = Filled(groups * m, h, 99 + m, 1.0f);
      std::vector<float> out(in.num_elements());
      std::vector<moe::experts::ExpertGroup> step;
      for (int e = 0; e < groups; ++e) step.push_back({{0, e}, e * m, m});
      double dense = 0;  // TFLOP/s of one dense GEMM of the same FLOPs (H1's denominator)
      if (on_gpu) {
        auto d = moe::experts::cuda::DenseGemmTflops(device, groups * m, 3 * inter, h, *dtype, repeats);
        if (!d.ok()) {
          std::fprintf(stderr, "moe-expert-bench: dense GEMM: %s\n", d.status().ToString().c_str());
          return 1;
        }
        dense = *d;
      }
      for (size_t i = 0; i < modes.size(); ++i) {
        auto t = TimeRun(*backends[i], step, in.f32(), absl::MakeSpan(out), repeats);
        if (!t.ok()) {
          std::fprintf(stderr, "moe-expert-bench: %s\n", t.status().ToString().c_str());
          return 1;
        }
        // A device's products against the dense GEMM, both timed on the device; else wall time.
        const double step_ms = t->on_device ? t->compute_ms : t->median_ms;
        const double tflops = 6.0 * groups * m * h * inter / (step_ms * 1e-3) / 1e12;
        const double gbps = weight_bytes / (step_ms * 1e-3) / 1e9;
        const double h1 = dense > 0 ? tflops / dense : 0, h3 = copy_gbps > 0 ? gbps / copy_gbps : 0;
        // H1 and H3 are GPU ratios; the CPU has its own (P2, moe-bench-local).
        const std::string h1_text = on_gpu ? absl::StrFormat("%.2f", h1) : "-";
        const std::string h3_text = on_gpu ? absl::StrFormat("%.2f", h3) : "-";
        const std::string device_text = t->on_device ? absl::StrFormat("%.3f", t->compute_ms) : "-";
        const std::string staging_text = t->on_device ? absl::StrFormat("%.3f", t->staging_ms) : "-";
        std::printf("%-13s %8ld %10.3f %6.3f-%-7.3f %10s %10s %10.3f %10s %12.0f %10s\n", modes[i].c_str(),
                    static_cast<long>(m), t->median_ms, t->min_ms, t->max_ms, device_text.c_str(),
                    staging_text.c_str(), tflops, h1_text.c_str(), gbps, h3_text.c_str());
        json_rows.push_back(absl::StrFormat(
            R"({"dims":"%s","hidden":%d,"intermediate":%d,"mode":"%s","tokens_per_expert":%d,"median_ms":%g,)"
            R"("min_ms":%g,"max_ms":%g,"device_compute_ms":%g,"staging_ms":%g,"tflops":%g,"dense_tflops":%g,)"
            R"("h1":%g,"weight_gbps":%g,"h3":%g})",
            dims, h, inter, modes[i], m, t->median_ms, t->min_ms, t->max_ms, t->compute_ms, t->staging_ms, tflops,
            dense, h1, gbps, h3));
      }
      if (on_gpu) {
        std::printf("%-13s %8ld %10s %14s %10s %10s %10.3f\n", "dense GEMM", static_cast<long>(m), "", "", "", "",
                    dense);
      }
    }
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream(path) << absl::StrFormat(
        R"({"backend":"%s","device":"%s","dtype":"%s","experts_per_step":%d,"device_copy_gbps":%g,"results":[%s]})",
        backend, on_gpu ? *gpu : std::string("cpu"), on_gpu ? dtype_name : "f32", groups, copy_gbps,
        absl::StrJoin(json_rows, ","))
                        << "\n";
  }
  return 0;
}
