// tests/server/worker/batch_queue_test.cc
// BatchQueue: items that wait while a step runs are taken together by the next step, within the
// row budget, in FIFO order; a full queue refuses and leaves the item with the caller; the
// destructor runs what is queued; RunIfIdle runs a step on the caller only when no step runs and
// nothing waits. The step is held on a Notification, never on a sleep.
#include "server/worker/batch_queue.h"

#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

struct Item {
  int id;
  int64_t rows;
};

// Records the ids of every step; the first step waits for `release`.
struct Recorder {
  absl::Notification first_started, release;
  absl::Mutex mu;
  std::vector<std::vector<int>> steps ABSL_GUARDED_BY(mu);

  void Step(std::vector<std::unique_ptr<Item>>& batch) {
    std::vector<int> ids;
    for (const auto& item : batch) ids.push_back(item->id);
    bool first = false;
    {
      absl::MutexLock lock(&mu);
      first = steps.empty();
      steps.push_back(ids);
    }
    if (first) {
      first_started.Notify();
      release.WaitForNotification();
    }
  }
  std::vector<std::vector<int>> Steps() {
    absl::MutexLock lock(&mu);
    return steps;
  }
};

std::unique_ptr<BatchQueue<std::unique_ptr<Item>>> MakeQueue(Recorder& r, size_t capacity, int64_t max_rows) {
  return std::make_unique<BatchQueue<std::unique_ptr<Item>>>(
      capacity, max_rows, [](const std::unique_ptr<Item>& i) { return i->rows; },
      [&r](std::vector<std::unique_ptr<Item>>& batch) { r.Step(batch); });
}

absl::Status Submit(BatchQueue<std::unique_ptr<Item>>& q, int id, int64_t rows) {
  auto item = std::make_unique<Item>(Item{id, rows});
  absl::Status s = q.Submit(item);
  if (!s.ok()) EXPECT_NE(item, nullptr) << "a refused item must stay with the caller";
  return s;
}

TEST(BatchQueueTest, WhatWaitsDuringAStepIsTakenTogetherWithinTheRowBudget) {
  Recorder r;
  {
    auto q = MakeQueue(r, 16, /*max_rows=*/10);
    ASSERT_OK(Submit(*q, 1, 4));
    r.first_started.WaitForNotification();  // step [1] is running and held
    ASSERT_OK(Submit(*q, 2, 3));
    ASSERT_OK(Submit(*q, 3, 3));
    ASSERT_OK(Submit(*q, 4, 4));  // 3 + 3 + 4 = 10: still fits
    ASSERT_OK(Submit(*q, 5, 1));  // 11: the next step
    ASSERT_OK(Submit(*q, 6, 25)); // larger than the budget: runs alone
    ASSERT_OK(Submit(*q, 7, 2));
    EXPECT_EQ(q->depth(), 6u);
    r.release.Notify();
  }  // the destructor runs everything queued before it returns
  EXPECT_EQ(r.Steps(), (std::vector<std::vector<int>>{{1}, {2, 3, 4}, {5}, {6}, {7}}));
}

TEST(BatchQueueTest, AFullQueueRefusesAndKeepsTheItem) {
  Recorder r;
  {
    auto q = MakeQueue(r, 2, 100);
    ASSERT_OK(Submit(*q, 1, 1));
    r.first_started.WaitForNotification();
    ASSERT_OK(Submit(*q, 2, 1));
    ASSERT_OK(Submit(*q, 3, 1));
    EXPECT_THAT(Submit(*q, 4, 1), testing::StatusIs(absl::StatusCode::kResourceExhausted, "2 requests waiting"));
    r.release.Notify();
  }
  EXPECT_EQ(r.Steps(), (std::vector<std::vector<int>>{{1}, {2, 3}}));
}

TEST(BatchQueueTest, AnIdleQueueStartsAStepAtOnce) {
  Recorder r;
  r.release.Notify();  // nothing is held
  absl::Notification done;
  {
    BatchQueue<std::unique_ptr<Item>> q(
        4, 100, [](const std::unique_ptr<Item>& i) { return i->rows; },
        [&](std::vector<std::unique_ptr<Item>>& batch) {
          r.Step(batch);
          done.Notify();
        });
    auto item = std::make_unique<Item>(Item{9, 1});
    ASSERT_OK(q.Submit(item));
    done.WaitForNotification();  // no timer: the step ran without anything else arriving
  }
  EXPECT_EQ(r.Steps(), (std::vector<std::vector<int>>{{9}}));
}

TEST(BatchQueueTest, RunIfIdleRunsOnTheCallerOnlyWhenNothingElseIs) {
  Recorder r;
  {
    auto q = MakeQueue(r, 16, 100);
    // Idle: the caller runs the step itself; the first step blocks, so run it on another thread.
    std::thread caller([&] {
      auto item = std::make_unique<Item>(Item{1, 1});
      EXPECT_TRUE(q->RunIfIdle(item));
      EXPECT_EQ(item, nullptr);
    });
    r.first_started.WaitForNotification();  // step [1] runs on `caller`, held
    // Busy: not run inline, the item stays with us; queued items wait for the running step.
    auto second = std::make_unique<Item>(Item{2, 1});
    EXPECT_FALSE(q->RunIfIdle(second));
    ASSERT_NE(second, nullptr);
    ASSERT_OK(q->Submit(second));
    ASSERT_OK(Submit(*q, 3, 1));
    EXPECT_EQ(q->depth(), 2u);
    r.release.Notify();
    caller.join();
  }
  EXPECT_EQ(r.Steps(), (std::vector<std::vector<int>>{{1}, {2, 3}}));
}

}  // namespace
}  // namespace moe::server
