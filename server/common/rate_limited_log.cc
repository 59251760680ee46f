// server/common/rate_limited_log.cc
#include "server/common/rate_limited_log.h"

#include <cstdio>

namespace moe::server {

void RateLimitedLog::Warn(const std::string& key, const std::string& message) {
  const absl::Time now = absl::Now();
  int64_t suppressed = 0;
  {
    absl::MutexLock lock(&mu_);
    Entry& e = entries_[key];
    if (now - e.last < interval_) {
      ++e.suppressed;
      return;
    }
    suppressed = e.suppressed;
    e.suppressed = 0;
    e.last = now;
  }
  std::fprintf(stderr, "warning: %s (%ld similar suppressed)\n", message.c_str(), static_cast<long>(suppressed));
}

}  // namespace moe::server
