// tests/server/router/forward_batcher_test.cc
// ForwardBatcher with a fake dispatcher that holds every dispatch until the test completes it:
// an idle layer dispatches at once and alone; Forwards arriving while it is busy leave together
// when it finishes (inputs concatenated, routing renumbered, the earliest deadline), within the
// token budget; each gets its own rows and its own routing back; other layers and dtypes do not
// wait; the waiting room is bounded; a Forward whose deadline passed while waiting is answered
// without a dispatch; a batch that fails is retried member by member (those with time left); a
// dispatch out for longer than `stall` stops holding up the layer (a fake clock, not a sleep). The
// background stall watcher is off here (it runs on the real clock); failure_test covers it.
// No sleeps, no threads: everything happens in the test's own calls.
#include "server/router/forward_batcher.h"

#include <initializer_list>
#include <memory>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

using model::DType;
constexpr int kHidden = 3;
constexpr int kExperts = 4;

// What a Forward got back.
struct Answer {
  std::optional<grpc::StatusCode> code;
  std::vector<float> out;
  int64_t routed_tokens = -1;
  int32_t first_expert = -1;
};

// Records dispatches; the test completes them.
struct FakeDispatcher {
  struct Pending {
    DispatchInput in;
    DispatchCall::Done done;
  };
  std::vector<Pending> pending;

  ForwardBatcher::Start Start() {
    return [this](DispatchInput in, grpc::CallbackServerContext*, DispatchCall::Done done) {
      pending.push_back({std::move(in), std::move(done)});
    };
  }
  // Answers dispatch `i` with out[r, c] = in[r, c] · 10 (so each row is traceable).
  void Complete(size_t i) {
    Pending p = std::move(pending[i]);
    pending.erase(pending.begin() + static_cast<long>(i));
    std::vector<float> out = p.in.x;
    for (float& v : out) v *= 10;
    p.done(grpc::Status::OK, out, p.in.routing);
  }
  // Fails dispatch `i` with `code`.
  void Fail(size_t i, grpc::StatusCode code) {
    Pending p = std::move(pending[i]);
    pending.erase(pending.begin() + static_cast<long>(i));
    p.done(grpc::Status(code, "injected"), {}, p.in.routing);
  }
};

// A Forward of `tokens` rows whose values start at `base`, each token routed to expert
// (first_expert + t) % kExperts with weight 1.
ForwardBatcher::Forward MakeForward(int layer, DType dtype, int64_t tokens, float base, int first_expert,
                                    Answer* answer,
                                    std::chrono::system_clock::time_point deadline = std::chrono::system_clock::now() +
                                                                                     std::chrono::hours(1)) {
  ForwardBatcher::Forward f;
  f.layer = layer;
  f.num_slots = kExperts;
  f.dtype = dtype;
  f.tokens = tokens;
  for (int64_t i = 0; i < tokens * kHidden; ++i) f.x.push_back(base + float(i));
  f.routing.num_tokens = tokens;
  f.routing.num_experts = kExperts;
  f.routing.token_offsets.push_back(0);
  for (int64_t t = 0; t < tokens; ++t) {
    f.routing.experts.push_back(static_cast<int32_t>((first_expert + t) % kExperts));
    f.routing.weights.push_back(1.0f);
    f.routing.token_offsets.push_back(t + 1);
  }
  f.routing.dropped.assign(kExperts, 0);
  f.routing.rerouted.assign(kExperts, 0);
  f.routing.score_sums.assign(kExperts, 0.0);
  f.deadline = deadline;
  f.done = [answer](const grpc::Status& status, absl::Span<const float> out, const router::Routing& routing) {
    answer->code = status.error_code();
    answer->out.assign(out.begin(), out.end());
    answer->routed_tokens = routing.num_tokens;
    answer->first_expert = routing.experts.empty() ? -1 : routing.experts[0];
  };
  return f;
}

std::vector<float> Times10(int64_t tokens, float base) {
  std::vector<float> v;
  for (int64_t i = 0; i < tokens * kHidden; ++i) v.push_back((base + float(i)) * 10);
  return v;
}

absl::Status Submit(ForwardBatcher& batcher, ForwardBatcher::Forward f) { return batcher.Submit(f); }

// One layer-0 f32 Forward: its tokens, first value, first expert, and where its answer goes.
struct Spec {
  int64_t tokens;
  float base;
  int first_expert;
  Answer* answer;
};
void SubmitAll(ForwardBatcher& batcher, std::initializer_list<Spec> specs) {
  for (const Spec& s : specs) {
    ASSERT_OK(Submit(batcher, MakeForward(0, DType::kF32, s.tokens, s.base, s.first_expert, s.answer)));
  }
}

std::unique_ptr<ForwardBatcher> MakeBatcher(FakeDispatcher& d, int64_t max_tokens = 100, size_t max_waiting = 16) {
  return std::make_unique<ForwardBatcher>(
      d.Start(), [](DispatchInput& in) { in.hidden = kHidden; },
      ForwardBatcherOptions{
          .max_in_flight = 1, .max_tokens = max_tokens, .max_waiting = max_waiting, .watch_stalls = false});
}

// Each test: a fake dispatcher, a batcher on it (a test may replace it), and answers to fill.
class ForwardBatcherTest : public ::testing::Test {
 protected:
  FakeDispatcher d;
  std::unique_ptr<ForwardBatcher> batcher = MakeBatcher(d);
  Answer a, b, c, e;
};

TEST_F(ForwardBatcherTest, WhatWaitsLeavesTogetherAndEachGetsItsOwnRows) {
  auto fa = MakeForward(0, DType::kF32, 1, 100, 0, &a);
  ASSERT_OK(batcher->Submit(fa));
  ASSERT_EQ(d.pending.size(), 1u);  // idle: dispatched at once, alone
  EXPECT_EQ(d.pending[0].in.routing.num_tokens, 1);
  const auto late = std::chrono::system_clock::now() + std::chrono::hours(2);
  auto fb = MakeForward(0, DType::kF32, 2, 200, 1, &b);
  const auto b_deadline = fb.deadline;  // the earliest of the three
  auto fc = MakeForward(0, DType::kF32, 3, 300, 2, &c, late);
  auto fe = MakeForward(0, DType::kF32, 1, 500, 3, &e);
  ASSERT_OK(batcher->Submit(fb));
  ASSERT_OK(batcher->Submit(fc));
  ASSERT_OK(batcher->Submit(fe));
  EXPECT_EQ(d.pending.size(), 1u);  // they wait for the layer's dispatch
  d.Complete(0);
  EXPECT_EQ(a.code, grpc::StatusCode::OK);
  EXPECT_EQ(a.out, Times10(1, 100));
  ASSERT_EQ(d.pending.size(), 1u);  // b, c and e as one dispatch
  const DispatchInput& merged = d.pending[0].in;
  EXPECT_EQ(merged.routing.num_tokens, 6);
  EXPECT_EQ(merged.routing.token_offsets, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(merged.routing.experts, (std::vector<int32_t>{1, 2, 2, 3, 0, 3}));
  EXPECT_EQ(merged.x.size(), 6u * kHidden);
  EXPECT_EQ(merged.x[2 * kHidden], 300.0f);  // c's first row after b's two
  EXPECT_EQ(merged.deadline, b_deadline);
  EXPECT_EQ(merged.plan.num_tokens(), 6);
  EXPECT_FALSE(b.code.has_value());
  d.Complete(0);
  EXPECT_EQ(b.out, Times10(2, 200));
  EXPECT_EQ(c.out, Times10(3, 300));
  EXPECT_EQ(e.out, Times10(1, 500));
  EXPECT_EQ(b.routed_tokens, 2);  // its own routing, not the merged one
  EXPECT_EQ(c.first_expert, 2);
  EXPECT_TRUE(d.pending.empty());
  // Idle again: the next Forward goes at once.
  Answer f;
  auto ff = MakeForward(0, DType::kF32, 1, 600, 0, &f);
  ASSERT_OK(batcher->Submit(ff));
  EXPECT_EQ(d.pending.size(), 1u);
}

TEST_F(ForwardBatcherTest, TheTokenBudgetSplitsWhatWaits) {
  batcher = MakeBatcher(d, /*max_tokens=*/4);
  SubmitAll(*batcher, {{1, 0, 0, &a}, {2, 10, 0, &b}, {3, 20, 0, &c}, {1, 30, 0, &e}});
  d.Complete(0);
  ASSERT_EQ(d.pending.size(), 1u);
  EXPECT_EQ(d.pending[0].in.routing.num_tokens, 2);  // b alone: b + c would be 5 > 4
  d.Complete(0);
  ASSERT_EQ(d.pending.size(), 1u);
  EXPECT_EQ(d.pending[0].in.routing.num_tokens, 4);  // c + e
  d.Complete(0);
  EXPECT_EQ(e.out, Times10(1, 30));
}

TEST_F(ForwardBatcherTest, OtherLayersAndDtypesDoNotWait) {
  ASSERT_OK(Submit(*batcher, MakeForward(0, DType::kF32, 1, 0, 0, &a)));
  ASSERT_OK(Submit(*batcher, MakeForward(1, DType::kF32, 1, 0, 0, &b)));
  ASSERT_OK(Submit(*batcher, MakeForward(0, DType::kBF16, 1, 0, 0, &c)));
  ASSERT_EQ(d.pending.size(), 3u);
  EXPECT_EQ(d.pending[1].in.layer, 1);
  EXPECT_EQ(d.pending[2].in.wire_dtype, DType::kBF16);
}

TEST_F(ForwardBatcherTest, TheWaitingRoomIsBoundedAndExpiredForwardsAreAnsweredWithoutADispatch) {
  batcher = MakeBatcher(d, 100, /*max_waiting=*/2);
  auto fa = MakeForward(0, DType::kF32, 1, 0, 0, &a);
  auto fb = MakeForward(0, DType::kF32, 1, 10, 0, &b, std::chrono::system_clock::now() - std::chrono::seconds(1));
  auto fc = MakeForward(0, DType::kF32, 1, 20, 0, &c);
  auto fe = MakeForward(0, DType::kF32, 1, 30, 0, &e);
  ASSERT_OK(batcher->Submit(fa));
  ASSERT_OK(batcher->Submit(fb));
  ASSERT_OK(batcher->Submit(fc));
  EXPECT_THAT(batcher->Submit(fe), testing::StatusIs(absl::StatusCode::kResourceExhausted, "2 requests waiting"));
  EXPECT_FALSE(e.code.has_value());
  EXPECT_EQ(fe.tokens, 1);  // left with the caller
  d.Complete(0);
  EXPECT_EQ(b.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(b.out.empty());
  ASSERT_EQ(d.pending.size(), 1u);
  EXPECT_EQ(d.pending[0].in.routing.num_tokens, 1);  // c only
  d.Complete(0);
  EXPECT_EQ(c.out, Times10(1, 20));
}

TEST_F(ForwardBatcherTest, AFailedBatchIsRetriedMemberByMember) {
  SubmitAll(*batcher, {{1, 0, 0, &a}, {2, 10, 1, &b}, {1, 40, 2, &c}});
  d.Complete(0);
  ASSERT_EQ(d.pending.size(), 1u);  // b + c
  d.Fail(0, grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(b.code.has_value());  // not failed: sent again, alone
  ASSERT_EQ(d.pending.size(), 2u);
  EXPECT_EQ(d.pending[0].in.routing.num_tokens, 2);
  EXPECT_EQ(d.pending[1].in.routing.num_tokens, 1);
  d.Fail(1, grpc::StatusCode::UNAVAILABLE);  // c really needs what is down
  EXPECT_EQ(c.code, grpc::StatusCode::UNAVAILABLE);
  d.Complete(0);  // b did not
  EXPECT_EQ(b.code, grpc::StatusCode::OK);
  EXPECT_EQ(b.out, Times10(2, 10));
  EXPECT_EQ(b.first_expert, 1);
}

// A batch runs under its earliest member's deadline. When it runs out of time (say, on a hung
// worker), a member with time left goes again alone; one without gets DEADLINE_EXCEEDED.
TEST_F(ForwardBatcherTest, ABatchThatRanOutOfTimeSendsAgainOnlyMembersWithTimeLeft) {
  absl::Time now = absl::FromUnixSeconds(1000);
  ForwardBatcher clocked(d.Start(), [](DispatchInput& in) { in.hidden = kHidden; },
                         {.max_in_flight = 1, .clock = [&now] { return now; }, .watch_stalls = false});
  const auto in = [&](int seconds) { return absl::ToChronoTime(now + absl::Seconds(seconds)); };
  ASSERT_OK(Submit(clocked, MakeForward(0, DType::kF32, 1, 0, 0, &a, in(100))));
  ASSERT_OK(Submit(clocked, MakeForward(0, DType::kF32, 1, 10, 0, &b, in(10))));
  ASSERT_OK(Submit(clocked, MakeForward(0, DType::kF32, 2, 20, 0, &c, in(100))));
  d.Complete(0);
  ASSERT_EQ(d.pending.size(), 1u);  // b + c
  EXPECT_EQ(d.pending[0].in.deadline, in(10));
  now += absl::Seconds(20);  // b's deadline passes while the batch is out
  d.Fail(0, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(b.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_FALSE(c.code.has_value());  // c had 80 s left: sent again, alone
  ASSERT_EQ(d.pending.size(), 1u);
  EXPECT_EQ(d.pending[0].in.routing.num_tokens, 2);
  d.Complete(0);
  EXPECT_EQ(c.code, grpc::StatusCode::OK);
  EXPECT_EQ(c.out, Times10(2, 20));
  EXPECT_TRUE(d.pending.empty());
}

// A batch cancelled (the router stopping) or refused by a full worker is not sent again: under
// overload, one call per member would only add load.
TEST_F(ForwardBatcherTest, ACancelledOrRefusedBatchIsNotRetried) {
  for (grpc::StatusCode code : {grpc::StatusCode::CANCELLED, grpc::StatusCode::RESOURCE_EXHAUSTED}) {
    Answer a, b, c;
    SubmitAll(*batcher, {{1, 0, 0, &a}, {1, 10, 0, &b}, {1, 20, 0, &c}});
    d.Complete(0);
    d.Fail(0, code);
    EXPECT_EQ(b.code, code);
    EXPECT_EQ(c.code, code);
    EXPECT_TRUE(d.pending.empty());
  }
}

TEST_F(ForwardBatcherTest, AStalledDispatchStopsHoldingUpItsLayer) {
  absl::Time now = absl::FromUnixSeconds(1000);
  ForwardBatcher stalling(d.Start(), [](DispatchInput& in) { in.hidden = kHidden; },
                          {.max_in_flight = 1,
                           .stall = absl::Milliseconds(250),
                           .clock = [&now] { return now; },
                           .watch_stalls = false});
  ASSERT_OK(Submit(stalling, MakeForward(0, DType::kF32, 1, 0, 0, &a)));  // goes out, then hangs
  now += absl::Milliseconds(100);
  ASSERT_OK(Submit(stalling, MakeForward(0, DType::kF32, 1, 10, 0, &b)));
  EXPECT_EQ(d.pending.size(), 1u);  // a is young: b waits
  now += absl::Milliseconds(200);    // a has been out 300 ms > 250
  ASSERT_OK(Submit(stalling, MakeForward(0, DType::kF32, 2, 20, 0, &c)));
  ASSERT_EQ(d.pending.size(), 2u);  // b (older) and c leave together, without waiting for a
  EXPECT_EQ(d.pending[1].in.routing.num_tokens, 3);
  EXPECT_EQ(d.pending[1].in.x[0], 10.0f);
  ASSERT_OK(Submit(stalling, MakeForward(0, DType::kF32, 1, 30, 0, &e)));
  EXPECT_EQ(d.pending.size(), 2u);  // the b + c dispatch is young: e waits for it
  d.Complete(1);
  EXPECT_EQ(b.out, Times10(1, 10));
  EXPECT_EQ(c.out, Times10(2, 20));
  ASSERT_EQ(d.pending.size(), 2u);  // e took the freed slot
  d.Complete(0);                    // a finally returns
  EXPECT_EQ(a.out, Times10(1, 0));
  d.Complete(0);
  EXPECT_EQ(e.out, Times10(1, 30));
  EXPECT_TRUE(d.pending.empty());
}

}  // namespace
}  // namespace moe::server
