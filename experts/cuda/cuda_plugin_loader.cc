// experts/cuda/cuda_plugin_loader.cc
// cuda_backend.h for every binary: loads libmoe_cuda.so (next to the binary's ../lib, beside it,
// or on the library path) the first time CUDA is asked for, and forwards to it. Without the
// plugin (a build without nvcc, or a CPU-only install) every call says so.
#include <dlfcn.h>

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "experts/cuda/cuda_backend.h"
#include "experts/cuda/cuda_plugin_api.h"

namespace moe::experts::cuda {
namespace {

absl::StatusOr<const internal::PluginApi*> LoadPlugin() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  const std::vector<std::string> candidates = {(exe / ".." / "lib" / "libmoe_cuda.so").string(),
                                               (exe / "libmoe_cuda.so").string(), "libmoe_cuda.so"};
  std::vector<std::string> errors;
  for (const std::string& path : candidates) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      errors.push_back(dlerror());
      continue;
    }
    auto entry = reinterpret_cast<decltype(&moe_cuda_plugin_api)>(dlsym(lib, "moe_cuda_plugin_api"));
    if (entry == nullptr) return absl::FailedPreconditionError(absl::StrCat(path, " is not a moe-serve CUDA plugin"));
    return entry();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the CUDA backend is not available: this moe-serve was built without CUDA (nvcc not found, or "
      "MOE_ENABLE_CUDA=OFF), or libmoe_cuda.so is not installed (",
      absl::StrJoin(errors, "; "), ")"));
}

absl::StatusOr<const internal::PluginApi*> Plugin() {
  static const auto* const plugin = new absl::StatusOr<const internal::PluginApi*>(LoadPlugin());
  return *plugin;
}

}  // namespace

bool BuiltWithCuda() { return Plugin().ok(); }

absl::StatusOr<std::string> DescribeDevice(int device) {
  auto plugin = Plugin();
  if (!plugin.ok()) return plugin.status();
  return (*plugin)->describe_device(device);
}

absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateCudaBackend(absl::Span<const ExpertWeights> weights,
                                                                 const CudaOptions& options) {
  auto plugin = Plugin();
  if (!plugin.ok()) return plugin.status();
  return (*plugin)->create_backend(weights, options);
}

absl::StatusOr<double> DenseGemmTflops(int device, int64_t m, int64_t n, int64_t k, model::DType dtype, int repeats) {
  auto plugin = Plugin();
  if (!plugin.ok()) return plugin.status();
  return (*plugin)->dense_gemm_tflops(device, m, n, k, dtype, repeats);
}

absl::StatusOr<double> DeviceCopyGBps(int device, int64_t bytes, int repeats) {
  auto plugin = Plugin();
  if (!plugin.ok()) return plugin.status();
  return (*plugin)->device_copy_gbps(device, bytes, repeats);
}

}  // namespace moe::experts::cuda
