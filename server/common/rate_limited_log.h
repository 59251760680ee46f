// server/common/rate_limited_log.h
// Warnings that may fire on every request (failed dispatches) are printed at most once per
// interval per key, with the count of those suppressed meanwhile. Thread-safe.
#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace moe::server {

class RateLimitedLog {
 public:
  explicit RateLimitedLog(absl::Duration interval) : interval_(interval) {}
  // Prints "<message> (N similar suppressed)" to stderr unless `key` printed within the interval.
  void Warn(const std::string& key, const std::string& message);

 private:
  struct Entry {
    absl::Time last = absl::InfinitePast();
    int64_t suppressed = 0;
  };
  const absl::Duration interval_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe::server
