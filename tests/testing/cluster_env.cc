// tests/testing/cluster_env.cc
#include "tests/testing/cluster_env.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "base/status_macros.h"
#include "experts/expert_weights.h"
#include "model/checkpoint_generator.h"
#include "tests/testing/random_data.h"

namespace moe::testing {

std::string BinDir() {
  // A bundle (scripts/gpu-check.sh) runs the tests away from the build tree and says where.
  const char* dir = std::getenv("MOE_BIN_DIR");
  return dir != nullptr && *dir != '\0' ? dir : MOE_BIN_DIR;
}

std::string WriteCheckpoint(const model::ModelConfig& config, model::DType dtype, uint64_t seed) {
  const std::string dir = MakeTempDir("model");
  absl::Status s = model::WriteRandomCheckpoint(dir, {.config = config, .dtype = dtype, .num_shards = 2, .seed = seed});
  if (!s.ok()) std::abort();
  return dir;
}

server::ClusterOptions ClusterFor(const std::string& checkpoint, int workers, int replicas) {
  server::ClusterOptions o;
  o.checkpoint = checkpoint;
  o.workers = workers;
  o.replicas = replicas;
  o.bin_dir = BinDir();
  o.worker_flags = {"--threads=1"};  // several workers share two cores
  return o;
}

absl::StatusOr<std::unique_ptr<Reference>> Reference::Load(const std::string& checkpoint) {
  auto ref = std::make_unique<Reference>();
  ASSIGN_OR_RETURN(ref->checkpoint_, model::Checkpoint::Open(checkpoint));
  ASSIGN_OR_RETURN(ref->model_, router::MoeModel::Create(*ref->checkpoint_));
  std::vector<experts::ExpertKey> keys = experts::AllExperts(ref->checkpoint_->config());
  for (const auto& key : experts::AlwaysOnExperts(ref->checkpoint_->config())) keys.push_back(key);
  ASSIGN_OR_RETURN(ref->backend_, experts::CpuExpertBackend::Create(*ref->checkpoint_, keys, {}));
  return ref;
}

absl::StatusOr<std::vector<float>> Reference::Forward(int layer, const std::vector<float>& x, int64_t n,
                                                      router::Routing* routing) const {
  ASSIGN_OR_RETURN(const router::MoeLayer* moe, model_->layer(layer));
  return moe->Forward(x, n, *backend_, routing);
}

absl::StatusOr<std::vector<float>> Reference::ForwardRouted(int layer, const std::vector<float>& x, int64_t n,
                                                            const router::Routing& routing) const {
  ASSIGN_OR_RETURN(const router::MoeLayer* moe, model_->layer(layer));
  return moe->Run(x, n, routing, *backend_);
}

absl::StatusOr<const router::Gate*> Reference::GateOf(int layer) const {
  ASSIGN_OR_RETURN(const router::MoeLayer* moe, model_->layer(layer));
  return &moe->gate();
}

}  // namespace moe::testing
