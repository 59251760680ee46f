// server/common/compute_queue.h
// A bounded FIFO of compute tasks run by a few dedicated threads, so gRPC callback threads
// never block on expert or gate compute. Used by the worker service and the router's --local
// mode. Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace moe::server {

class ComputeQueue {
 public:
  // Starts `threads` (>= 1) threads; at most `capacity` tasks wait at once.
  ComputeQueue(int threads, size_t capacity);
  // Runs the tasks already queued, then joins the threads.
  ~ComputeQueue();
  ComputeQueue(const ComputeQueue&) = delete;
  ComputeQueue& operator=(const ComputeQueue&) = delete;

  // Queues `task`; RESOURCE_EXHAUSTED (task not run) when `capacity` tasks already wait.
  absl::Status Submit(std::function<void()> task);
  // Tasks waiting (not yet started).
  size_t depth() const;

 private:
  void Loop();

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace moe::server
