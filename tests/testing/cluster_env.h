// tests/testing/cluster_env.h
// Helpers for integration tests that run real moe-serve processes: where the binaries are, a
// generated checkpoint, and the in-process reference (MoeModel + CPU backend) to compare with.
// Test-only; thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "experts/cpu/cpu_backend.h"
#include "model/checkpoint.h"
#include "model/dtype.h"
#include "model/model_config.h"
#include "router/moe_model.h"
#include "router/routing.h"
#include "server/cluster/local_cluster.h"
#include "tests/testing/error_measures.h"  // MaxRelError, for the comparisons with Reference

namespace moe::testing {

// Where moe-expert, moe-router and moe-cluster are: $MOE_BIN_DIR if set (a bundle), else build/bin.
std::string BinDir();

// Writes a seeded random checkpoint of `config` in a fresh temp folder and returns the folder.
std::string WriteCheckpoint(const model::ModelConfig& config, model::DType dtype, uint64_t seed);

// Cluster options for `checkpoint` with binaries from BinDir().
server::ClusterOptions ClusterFor(const std::string& checkpoint, int workers, int replicas = 1);

// The in-process path on the same checkpoint: the numerical reference for networked results.
class Reference {
 public:
  static absl::StatusOr<std::unique_ptr<Reference>> Load(const std::string& checkpoint);
  // [n, H] f32 output of `layer` for `x` ([n, H] f32), and the routing used.
  absl::StatusOr<std::vector<float>> Forward(int layer, const std::vector<float>& x, int64_t n,
                                             router::Routing* routing = nullptr) const;
  // The output of `layer` for `x` routed as `routing` says (e.g. a degraded routing).
  absl::StatusOr<std::vector<float>> ForwardRouted(int layer, const std::vector<float>& x, int64_t n,
                                                   const router::Routing& routing) const;
  absl::StatusOr<const router::Gate*> GateOf(int layer) const;
  const model::ModelConfig& config() const { return model_->config(); }

 private:
  std::unique_ptr<model::Checkpoint> checkpoint_;
  std::unique_ptr<router::MoeModel> model_;
  std::unique_ptr<experts::CpuExpertBackend> backend_;
};

}  // namespace moe::testing
