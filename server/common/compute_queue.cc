// server/common/compute_queue.cc
#include "server/common/compute_queue.h"

#include "absl/strings/str_cat.h"

namespace moe::server {

ComputeQueue::ComputeQueue(int threads, size_t capacity) : capacity_(capacity) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Loop(); });
}

ComputeQueue::~ComputeQueue() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

absl::Status ComputeQueue::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (tasks_.size() >= capacity_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("compute queue full (", capacity_, " requests waiting)"));
  }
  tasks_.push_back(std::move(task));
  return absl::OkStatus();
}

size_t ComputeQueue::depth() const {
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

void ComputeQueue::Loop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ComputeQueue* q) ABSL_NO_THREAD_SAFETY_ANALYSIS { return q->stopping_ || !q->tasks_.empty(); },
          this));
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace moe::server
