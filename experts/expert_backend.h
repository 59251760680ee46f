// experts/expert_backend.h
// The interface every expert backend implements (CPU BLAS here; CUDA in experts/cuda later):
// run the SwiGLU experts a process hosts over groups of token rows. Callers: the in-process
// MoeLayer (router/) and the worker service (server/). Implementations must be thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace moe::experts {

// One expert of one MoE layer.
struct ExpertKey {
  int layer = 0;
  int expert = 0;
  friend bool operator==(const ExpertKey&, const ExpertKey&) = default;
  friend auto operator<=>(const ExpertKey&, const ExpertKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ExpertKey& k) {
    return H::combine(std::move(h), k.layer, k.expert);
  }
};

// Rows [row_begin, row_begin + num_rows) of a step's input go through expert `key`, and its
// output lands in the same rows of the step's output.
struct ExpertGroup {
  ExpertKey key;
  int64_t row_begin = 0;
  int64_t num_rows = 0;
};

// What a backend keeps of the weights: their dtype ("bf16", "f32", or "mixed") and bytes.
struct ResidentWeights {
  std::string dtype;
  int64_t bytes = 0;
};

struct ExpertWeights;  // experts/expert_weights.h

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;

  // "cpu", "cuda".
  virtual std::string name() const = 0;
  // A human description of the device and its kernels, e.g. "2 threads; CPU ...; kernels amx: ...".
  virtual std::string device() const = 0;
  // The dtype and bytes of the weights as held; empty where a backend does not say.
  virtual ResidentWeights resident() const { return {}; }
  virtual int hidden_size() const = 0;
  virtual int intermediate_size() const = 0;
  // The experts this backend holds weights for, sorted.
  virtual const std::vector<ExpertKey>& hosted() const = 0;
  virtual bool Hosts(const ExpertKey& key) const = 0;

  // Computes y = W2·(silu(W1·x) ⊙ W3·x) for every row of every group. `in` and `out` are
  // row-major [rows, hidden_size] f32. Rows outside every group are left untouched.
  // Returns NOT_FOUND for an expert not hosted, INVALID_ARGUMENT for a group outside the
  // buffers or a buffer whose size is not a multiple of hidden_size. Thread-safe.
  virtual absl::Status Run(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                           absl::Span<float> out) = 0;

  // A new backend with this one's options hosting hosted() − remove + add (`add` loaded by the
  // caller, LoadExpertWeights), sharing the weights it keeps with this one, so that a worker can
  // change what it hosts while calls in flight finish on this one (server/worker's LoadExperts).
  // This backend is unchanged. UNIMPLEMENTED where a backend cannot (the default).
  virtual absl::StatusOr<std::unique_ptr<ExpertBackend>> Rebuild(absl::Span<const ExpertWeights> add,
                                                                 absl::Span<const ExpertKey> remove) const;

  // OK while the backend can compute. A device that hit an unrecoverable (sticky) error returns
  // INTERNAL forever after; the worker then turns NOT_SERVING and exits instead of answering.
  virtual absl::Status Health() const { return absl::OkStatus(); }

  // Where the last Run's time went on a device, measured with the device's own events: staging
  // in (host f32 rows to the device and into the compute dtype), the expert products, staging
  // out. Empty for backends that compute on the host (the CPU's). For benchmarks (moe-expert-bench
  // times H1 and H3 on `compute_ms`, as it times the dense GEMM it compares with). Thread-safe.
  struct StepTimes {
    double stage_in_ms = 0, compute_ms = 0, stage_out_ms = 0;
  };
  virtual std::optional<StepTimes> LastStepTimes() const { return std::nullopt; }
};

// The checks every backend's Run starts with (buffer sizes, group bounds, hosted experts).
absl::Status ValidateGroups(const ExpertBackend& backend, absl::Span<const ExpertGroup> groups,
                            size_t in_size, size_t out_size);

}  // namespace moe::experts
