// server/worker/batch_queue.h
// A bounded FIFO of work items and one thread that takes every item waiting when it becomes free
// — as many as fit in a row budget, at least one — and hands them to `step` together. This is
// the worker's dynamic batching: requests that arrive while a step computes are merged into the
// next one, so a busy worker runs fewer, larger steps, and an idle one starts at once (no timer).
// RunIfIdle lets the caller run a step of its one item on its own thread when nothing is queued
// or computing (no hand-off to the queue's thread, no wake-up); items arriving meanwhile queue
// for the next step as usual. One step at a time either way.
// Used by ExpertServiceImpl with T = its pending Forward. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace moe::server {

template <typename T>
class BatchQueue {
 public:
  // `rows_of(item)` is what an item adds to a step; a step takes items while their rows stay
  // within `max_step_rows` (a larger single item still runs, alone). At most `capacity` items wait.
  BatchQueue(size_t capacity, int64_t max_step_rows, std::function<int64_t(const T&)> rows_of,
             std::function<void(std::vector<T>&)> step)
      : capacity_(capacity), max_step_rows_(max_step_rows), rows_of_(std::move(rows_of)), step_(std::move(step)) {
    thread_ = std::thread([this] { Loop(); });
  }
  // Runs what is already queued, then joins the thread.
  ~BatchQueue() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // Queues `item`; RESOURCE_EXHAUSTED (item untouched) when `capacity` items already wait.
  absl::Status Submit(T& item) {
    absl::MutexLock lock(&mu_);
    if (items_.size() >= capacity_) {
      return absl::ResourceExhaustedError(absl::StrCat("compute queue full (", capacity_, " requests waiting)"));
    }
    items_.push_back(std::move(item));
    return absl::OkStatus();
  }
  // If no step is running and nothing waits, runs `step` on {item} on the calling thread and
  // returns true; otherwise returns false with `item` untouched (Submit it then).
  bool RunIfIdle(T& item) {
    {
      absl::MutexLock lock(&mu_);
      if (busy_ || stopping_ || !items_.empty()) return false;
      busy_ = true;
    }
    std::vector<T> one;
    one.push_back(std::move(item));
    step_(one);
    absl::MutexLock lock(&mu_);
    busy_ = false;
    return true;
  }
  // Items waiting (not yet taken by a step).
  size_t depth() const {
    absl::MutexLock lock(&mu_);
    return items_.size();
  }

 private:
  void Loop() {
    std::vector<T> batch;
    while (true) {
      batch.clear();
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](BatchQueue* q) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return !q->busy_ && (q->stopping_ || !q->items_.empty());
            },
            this));
        if (items_.empty()) return;  // stopping and drained
        int64_t rows = 0;
        while (!items_.empty() && (batch.empty() || rows + rows_of_(items_.front()) <= max_step_rows_)) {
          rows += rows_of_(items_.front());
          batch.push_back(std::move(items_.front()));
          items_.pop_front();
        }
        busy_ = true;
      }
      step_(batch);
      absl::MutexLock lock(&mu_);
      busy_ = false;
    }
  }

  const size_t capacity_;
  const int64_t max_step_rows_;
  const std::function<int64_t(const T&)> rows_of_;
  const std::function<void(std::vector<T>&)> step_;
  mutable absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;  // a step is running (on the queue's thread or a RunIfIdle caller)
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace moe::server
