// experts/backend_factory.cc
#include "experts/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "experts/cpu_backend.h"
#include "experts/status_macros.h"

namespace moe::experts {

absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateBackend(const Checkpoint& checkpoint,
                                                             absl::Span<const ExpertKey> hosted,
                                                             const BackendOptions& options) {
  if (options.kind == "cpu") {
    ASSIGN_OR_RETURN(auto backend,
                     CpuExpertBackend::Create(checkpoint, hosted, {.threads = options.threads}));
    return std::unique_ptr<ExpertBackend>(std::move(backend));
  }
  if (options.kind == "cuda") {
    return absl::FailedPreconditionError(
        "backend 'cuda' is not available in this build (the CUDA expert backend is not built yet)");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", options.kind, "'; expected cpu or cuda"));
}

}  // namespace moe::experts
