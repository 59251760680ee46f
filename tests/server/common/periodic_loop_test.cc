// tests/server/common/periodic_loop_test.cc
// PeriodicLoop: with an interval of an hour, a Wake runs the next round at once (observed through
// a notification, not a clock), each Wake one round; Stop returns without waiting out the
// interval; rounds run at the interval without a Wake.
#include "server/common/periodic_loop.h"

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace moe::server {
namespace {

TEST(PeriodicLoopTest, WakeRunsARoundNowAndStopDoesNotWaitOutTheInterval) {
  absl::Mutex mu;
  int rounds = 0;
  PeriodicLoop loop;
  loop.Start(absl::Hours(1), [&] {
    absl::MutexLock lock(&mu);
    ++rounds;
  });
  for (int want = 1; want <= 3; ++want) {
    loop.Wake();
    absl::MutexLock lock(&mu);
    auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return rounds >= want; };
    mu.Await(absl::Condition(&reached));
  }
  loop.Stop();  // an hour's interval: returns only because Stop wakes the wait
  loop.Stop();  // idempotent
  absl::MutexLock lock(&mu);
  EXPECT_EQ(rounds, 3);
}

TEST(PeriodicLoopTest, RunsAtTheIntervalUnwoken) {
  absl::Mutex mu;
  int rounds = 0;
  PeriodicLoop loop;
  loop.Start(absl::Milliseconds(1), [&] {
    absl::MutexLock lock(&mu);
    ++rounds;
  });
  absl::MutexLock lock(&mu);
  auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return rounds >= 5; };
  mu.Await(absl::Condition(&reached));
}

}  // namespace
}  // namespace moe::server
