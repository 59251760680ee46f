// server/common/token_auth.h
// Bearer-token authentication: of the router's API (--auth_token_file) and of a worker's admin
// calls, LoadExperts/UnloadExperts (--admin_token_file). A call must carry
// "authorization: Bearer <token>" with the file's token (surrounding whitespace ignored), compared
// in constant time. The file is re-read when its modification time changes (checked at most once
// a second), so tokens rotate without a restart. Health (grpc.health.v1, OIP ServerLive/Ready)
// stays open for probes. Used by MoeServiceImpl, OipService and ExpertServiceImpl. Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"

namespace moe::server {

class TokenAuth {
 public:
  // INVALID_ARGUMENT if the file cannot be read or holds no token.
  static absl::StatusOr<std::unique_ptr<TokenAuth>> FromFile(const std::string& path);
  // OK, or UNAUTHENTICATED saying whether the token was missing or wrong (never echoing it).
  absl::Status Check(const grpc::ServerContextBase& context);
  // The comparison itself, exposed for tests: equal lengths and bytes, in time independent of
  // where they differ.
  static bool ConstantTimeEqual(absl::string_view a, absl::string_view b);

 private:
  explicit TokenAuth(std::string path) : path_(std::move(path)) {}
  absl::Status Reload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  int64_t mtime_ns_ ABSL_GUARDED_BY(mu_) = -1;
  absl::Time checked_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace moe::server
