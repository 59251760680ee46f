// server/common/periodic_loop.h
// A thread that runs a round every interval — sooner when woken — until stopped: the schedule of
// the router's placement controller and worker discovery. The wait between rounds is a timed
// wait on a condition (stop or wake), not a sleep, so Stop returns as soon as a round in progress
// ends. Thread-safe; Start once.
#pragma once

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace moe::server {

class PeriodicLoop {
 public:
  PeriodicLoop() = default;
  PeriodicLoop(const PeriodicLoop&) = delete;
  PeriodicLoop& operator=(const PeriodicLoop&) = delete;
  ~PeriodicLoop() { Stop(); }

  // Calls `round` every `interval` (the first after one interval) on a thread of its own.
  void Start(absl::Duration interval, std::function<void()> round);
  // The next round runs now instead of at the interval.
  void Wake();
  // Idempotent; waits for a round in progress.
  void Stop();

 private:
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace moe::server
