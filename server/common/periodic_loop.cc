// server/common/periodic_loop.cc
#include "server/common/periodic_loop.h"

namespace moe::server {

void PeriodicLoop::Start(absl::Duration interval, std::function<void()> round) {
  if (thread_.joinable()) return;
  thread_ = std::thread([this, interval, round = std::move(round)] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto due = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || woken_; };
        mu_.AwaitWithTimeout(absl::Condition(&due), interval);
        if (stopping_) return;
        woken_ = false;
      }
      round();
    }
  });
}

void PeriodicLoop::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void PeriodicLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace moe::server
