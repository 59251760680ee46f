// server/expert_bench_main.cc
// moe-expert-bench: one worker step (G experts × m tokens each) on an expert backend, per shape:
// achieved TFLOP/s (6·G·m·H·I per step, wall time of Run, host staging included), and on a GPU the
// ratio to one cuBLAS dense GEMM of the same FLOPs (performance.md H1) and, the weight bytes read
// per second against a device-to-device copy (H3), both measured in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "experts/backend_factory.h"
#include "experts/cuda/cuda_backend.h"

ABSL_FLAG(std::string, backend, "", "cuda or cpu; default: cuda where a GPU is usable, else cpu.");
ABSL_FLAG(std::vector<std::string>, dims, std::vector<std::string>({"mixtral", "deepseek"}),
          "Shapes: mixtral (H 4096, I 14336), deepseek (H 7168, I 2048), or HxI like 1024x3584.");
ABSL_FLAG(std::string, tokens, "", "Tokens per expert; default 1..4096 on a GPU, 1,4,16,64 on the CPU.");
ABSL_FLAG(int, groups, 0, "Experts per step G; default 8 on a GPU, 2 on the CPU.");
ABSL_FLAG(std::string, dtype, "bf16", "Weights/activations on the GPU: bf16, f16 or f32 (CPU computes f32).");
ABSL_FLAG(int, repeats, 10, "Timed repetitions per point (after one warm-up); the median is shown.");
ABSL_FLAG(int, device, 0, "CUDA device.");

namespace {

using moe::experts::DType;
using moe::experts::ExpertWeights;
using moe::experts::Tensor;

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

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Benchmarks an expert backend per shape against the device's own peaks.");
  absl::ParseCommandLine(argc, argv);
  const int device = absl::GetFlag(FLAGS_device);
  std::string backend = absl::GetFlag(FLAGS_backend);
  const absl::StatusOr<std::string> gpu = moe::experts::CudaDevice(device);
  if (backend.empty()) backend = gpu.ok() ? "cuda" : "cpu";
  const bool on_gpu = backend == "cuda";
  if (on_gpu && !gpu.ok()) {
    std::fprintf(stderr, "moe-expert-bench: %s\n", gpu.status().ToString().c_str());
    return 1;
  }
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  const DType dtype = dtype_name == "f32" ? DType::kF32 : dtype_name == "f16" ? DType::kF16 : DType::kBF16;
  const int groups = absl::GetFlag(FLAGS_groups) > 0 ? absl::GetFlag(FLAGS_groups) : on_gpu ? 8 : 2;
  std::string tokens_text = absl::GetFlag(FLAGS_tokens);
  if (tokens_text.empty()) tokens_text = on_gpu ? "1,4,16,64,256,512,1024,4096" : "1,4,16,64";
  std::vector<int64_t> tokens;
  for (absl::string_view t : absl::StrSplit(tokens_text, ',')) {
    int64_t v = 0;
    if (absl::SimpleAtoi(t, &v) && v > 0) tokens.push_back(v);
  }
  std::printf("moe-expert-bench: backend %s on %s, %d experts per step, %s\n", backend.c_str(),
              on_gpu ? gpu->c_str() : "CPU (OpenBLAS, f32 compute)", groups, on_gpu ? dtype_name.c_str() : "f32");
  if (!on_gpu) std::printf("  (GPU: %s)\n", gpu.ok() ? gpu->c_str() : std::string(gpu.status().message()).c_str());
  double copy_gbps = 0;
  if (on_gpu) {
    auto copy = moe::experts::cuda::DeviceCopyGBps(device, int64_t{1} << 30, absl::GetFlag(FLAGS_repeats));
    if (copy.ok()) copy_gbps = *copy;
    std::printf("  device-to-device copy: %.0f GB/s (read + write)\n", copy_gbps);
  }
  for (const std::string& dims : absl::GetFlag(FLAGS_dims)) {
    int64_t h = 0, inter = 0;
    if (dims == "mixtral") {
      h = 4096, inter = 14336;
    } else if (dims == "deepseek") {
      h = 7168, inter = 2048;
    } else {
      std::vector<std::string> parts = absl::StrSplit(dims, 'x');
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &h) || !absl::SimpleAtoi(parts[1], &inter)) {
        std::fprintf(stderr, "moe-expert-bench: --dims: '%s' is not mixtral, deepseek or HxI\n", dims.c_str());
        return 2;
      }
    }
    std::vector<ExpertWeights> weights;
    for (int e = 0; e < groups; ++e) {
      weights.push_back({{0, e}, Filled(inter, h, 3 * e + 1, 0.02f), Filled(inter, h, 3 * e + 2, 0.02f),
                         Filled(h, inter, 3 * e + 3, 0.02f)});
    }
    auto b = moe::experts::CreateBackendFromWeights(weights, {.kind = backend, .device = device, .cuda_dtype = dtype});
    if (!b.ok()) {
      std::fprintf(stderr, "moe-expert-bench: %s\n", b.status().ToString().c_str());
      return 1;
    }
    weights.clear();
    std::printf("\n%s: H=%ld I=%ld\n%8s %10s %10s %10s %12s %12s %10s\n", dims.c_str(), static_cast<long>(h),
                static_cast<long>(inter), "tokens", "median ms", "TFLOP/s", "dense TF/s", "H1 ratio", "weight GB/s",
                "H3 ratio");
    const double weight_bytes = double(groups) * 3 * h * inter * (on_gpu ? moe::experts::DTypeSize(dtype) : 4);
    for (int64_t m : tokens) {
      const Tensor in = Filled(groups * m, h, 99 + m, 1.0f);
      std::vector<float> out(in.num_elements());
      std::vector<moe::experts::ExpertGroup> step;
      for (int e = 0; e < groups; ++e) step.push_back({{0, e}, e * m, m});
      std::vector<double> ms;
      for (int r = 0; r <= absl::GetFlag(FLAGS_repeats); ++r) {
        const auto start = std::chrono::steady_clock::now();
        if (absl::Status s = (*b)->Run(step, in.f32(), absl::MakeSpan(out)); !s.ok()) {
          std::fprintf(stderr, "moe-expert-bench: %s\n", s.ToString().c_str());
          return 1;
        }
        if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(ms.begin(), ms.end());
      const double t = ms[ms.size() / 2];
      const double tflops = 6.0 * groups * m * h * inter / (t * 1e-3) / 1e12;
      double dense = 0;
      if (on_gpu) {
        auto d = moe::experts::cuda::DenseGemmTflops(device, groups * m, 3 * inter, h, dtype, absl::GetFlag(FLAGS_repeats));
        if (d.ok()) dense = *d;
      }
      const double gbps = weight_bytes / (t * 1e-3) / 1e9;
      std::printf("%8ld %10.3f %10.2f %10.1f %12.2f %12.0f %10.2f\n", static_cast<long>(m), t, tflops, dense,
                  dense > 0 ? tflops / dense : 0.0, gbps, copy_gbps > 0 ? gbps / copy_gbps : 0.0);
    }
  }
  return 0;
}
