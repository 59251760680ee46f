// experts/backend_factory.h
// The one place that chooses an expert backend by name ("cpu", later "cuda"). Called by
// moe-expert and by the router's --local mode. Thread-safe (no state).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/checkpoint.h"
#include "experts/expert_backend.h"

namespace moe::experts {

struct BackendOptions {
  std::string kind = "cpu";  // "cpu" | "cuda"
  int threads = 0;           // CPU: BLAS threads (0 = every core)
  int device = 0;            // CUDA: device ordinal
};

// Creates a backend of `options.kind` hosting `hosted`. INVALID_ARGUMENT for an unknown kind;
// FAILED_PRECONDITION for "cuda" in a build or on a machine without CUDA; errors of loading.
absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateBackend(const Checkpoint& checkpoint,
                                                             absl::Span<const ExpertKey> hosted,
                                                             const BackendOptions& options);

}  // namespace moe::experts
