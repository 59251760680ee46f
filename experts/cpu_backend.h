// experts/cpu_backend.h
// The CPU expert backend: f32 SwiGLU experts on OpenBLAS (sgemm; groups of up to 12 rows stream
// the weights block-wise through sgemv instead, so they are read once, not packed). The reference
// every other backend is tested against. Weights are converted to f32 once at load (w1 and w3
// stacked into one [2I, H] matrix so the gate and up projections are one product); scratch is
// reused across calls. Thread-safe: Run calls are serialised, since each GEMM already uses every core.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "experts/checkpoint.h"
#include "experts/expert_backend.h"
#include "experts/expert_weights.h"

namespace moe::experts {

class CpuExpertBackend : public ExpertBackend {
 public:
  struct Options {
    int threads = 0;  // OpenBLAS threads; 0 keeps OpenBLAS's default (every core)
  };

  // Loads `hosted` from `checkpoint`. Errors as LoadExpertWeights.
  static absl::StatusOr<std::unique_ptr<CpuExpertBackend>> Create(
      const Checkpoint& checkpoint, absl::Span<const ExpertKey> hosted, Options options);
  // Builds from weights already in memory (any dtype; each expert may have its own
  // intermediate size). INVALID_ARGUMENT if the hidden sizes disagree, an expert's three shapes
  // do not fit together, an expert is given twice, or `weights` is empty.
  static absl::StatusOr<std::unique_ptr<CpuExpertBackend>> FromWeights(
      absl::Span<const ExpertWeights> weights, Options options);

  std::string name() const override { return "cpu"; }
  std::string device() const override;
  int hidden_size() const override { return hidden_; }
  // The largest intermediate size hosted.
  int intermediate_size() const override { return intermediate_; }
  const std::vector<ExpertKey>& hosted() const override { return hosted_; }
  bool Hosts(const ExpertKey& key) const override { return weights_.contains(key); }
  absl::Status Run(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                   absl::Span<float> out) override;

 private:
  struct Packed {
    int64_t inter = 0;
    std::vector<float> w13;  // [2I, H]: rows 0..I-1 = w1, rows I..2I-1 = w3
    std::vector<float> w2;   // [H, I]
  };
  CpuExpertBackend() = default;
  void RunOne(const Packed& w, const float* in, float* out, int64_t rows) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  int hidden_ = 0;
  int intermediate_ = 0;
  std::vector<ExpertKey> hosted_;
  absl::flat_hash_map<ExpertKey, Packed> weights_;
  absl::Mutex mu_;
  std::vector<float> scratch_ ABSL_GUARDED_BY(mu_);  // [rows, 2I], grows to the largest group
};

}  // namespace moe::experts
