// tests/server/router/micro_batches_test.cc
// StartMicroBatched with a fake dispatcher that holds each dispatch until the test completes it:
// a dispatch under min_tokens (or with parts = 1) goes whole, untouched; a larger one leaves as
// `parts` dispatches at once, token ranges of about equal size in order, each with its slice of
// inputs and routing and a plan for it; `done` runs once, after the last part, with the outputs
// in token order and the whole routing, whatever order the parts finish in; a failed part makes
// the status that of the first failed part in token order; a part answering with the wrong size
// is INTERNAL, not a buffer overrun. No threads, no sleeps.
#include "server/router/micro_batches.h"

#include <optional>
#include <vector>

#include "gtest/gtest.h"

namespace moe::server {
namespace {

constexpr int kHidden = 2;
constexpr int kExperts = 3;

struct FakeDispatcher {
  struct Pending {
    DispatchInput in;
    DispatchCall::Done done;
  };
  std::vector<Pending> pending;
  StartDispatch Start() {
    return [this](DispatchInput in, grpc::CallbackServerContext*, DispatchCall::Done done) {
      pending.push_back({std::move(in), std::move(done)});
    };
  }
  // Answers dispatch `i`: row r of the output = (Σ weights of token r) · x_r, so a row that went to
  // the wrong place, or with the wrong routing, shows.
  void Complete(size_t i, int extra_values = 0) {
    Pending& p = pending[i];
    std::vector<float> out(p.in.x.size() + static_cast<size_t>(extra_values), 0.0f);
    for (int64_t t = 0; t < p.in.routing.num_tokens; ++t) {
      float w = 0;
      for (float v : p.in.routing.WeightsOf(t)) w += v;
      for (int c = 0; c < kHidden; ++c) out[t * kHidden + c] = w * p.in.x[t * kHidden + c];
    }
    p.done(grpc::Status::OK, out, p.in.routing);
  }
  void Fail(size_t i, grpc::StatusCode code, const std::string& message) {
    pending[i].done(grpc::Status(code, message), {}, pending[i].in.routing);
  }
};

// `tokens` tokens, token t → experts (t % 3) and (t + 1) % 3 with weights 0.5 + t and 1, x_t = (t, -t).
DispatchInput MakeInput(int64_t tokens) {
  DispatchInput in;
  in.layer = 1;
  in.hidden = kHidden;
  in.routing.num_tokens = tokens;
  in.routing.num_experts = kExperts;
  in.routing.token_offsets.push_back(0);
  for (int64_t t = 0; t < tokens; ++t) {
    in.routing.experts.push_back(static_cast<int32_t>(t % 3));
    in.routing.experts.push_back(static_cast<int32_t>((t + 1) % 3));
    in.routing.weights.push_back(0.5f + static_cast<float>(t));
    in.routing.weights.push_back(1.0f);
    in.routing.token_offsets.push_back(in.routing.token_offsets.back() + 2);
    in.x.push_back(static_cast<float>(t));
    in.x.push_back(-static_cast<float>(t));
  }
  in.routing.dropped = {4, 5, 6};
  in.plan = *router::DispatchPlan::Build(in.routing, kExperts);
  return in;
}

struct Answer {
  int calls = 0;
  std::optional<grpc::Status> status;
  std::vector<float> out;
  router::Routing routing;
};

DispatchCall::Done Record(Answer& a) {
  return [&a](const grpc::Status& status, absl::Span<const float> out, const router::Routing& routing) {
    ++a.calls;
    a.status = status;
    a.out.assign(out.begin(), out.end());
    a.routing = routing;
  };
}

std::vector<float> Expected(int64_t tokens) {
  std::vector<float> out;
  for (int64_t t = 0; t < tokens; ++t) {
    const float w = 1.5f + static_cast<float>(t);
    out.push_back(w * static_cast<float>(t));
    out.push_back(-w * static_cast<float>(t));
  }
  return out;
}

TEST(MicroBatchesTest, SmallDispatchesAndPartsOneGoWhole) {
  for (MicroBatching options : {MicroBatching{.parts = 2, .min_tokens = 8}, MicroBatching{.parts = 1, .min_tokens = 1}}) {
    FakeDispatcher fake;
    Answer a;
    StartMicroBatched(options, MakeInput(7), nullptr, Record(a), fake.Start());
    ASSERT_EQ(fake.pending.size(), 1u);
    EXPECT_EQ(fake.pending[0].in.routing.num_tokens, 7);
    EXPECT_EQ(fake.pending[0].in.routing.dropped, (std::vector<int64_t>{4, 5, 6}));  // the very input
    fake.Complete(0);
    ASSERT_EQ(a.calls, 1);
    EXPECT_TRUE(a.status->ok());
    EXPECT_EQ(a.out, Expected(7));
  }
}

TEST(MicroBatchesTest, ALargeDispatchLeavesAsPartsAtOnceAndIsJoinedInTokenOrder) {
  FakeDispatcher fake;
  Answer a;
  StartMicroBatched({.parts = 3, .min_tokens = 8}, MakeInput(10), nullptr, Record(a), fake.Start());
  ASSERT_EQ(fake.pending.size(), 3u);  // all out before any answers
  const int64_t sizes[] = {3, 3, 4};
  int64_t first = 0;
  for (size_t p = 0; p < 3; ++p) {
    const DispatchInput& in = fake.pending[p].in;
    EXPECT_EQ(in.routing.num_tokens, sizes[p]);
    EXPECT_EQ(in.layer, 1);
    EXPECT_EQ(in.plan.num_tokens(), sizes[p]);
    EXPECT_EQ(in.plan.num_experts(), kExperts);
    EXPECT_EQ(in.plan.num_rows(), 2 * sizes[p]);
    ASSERT_EQ(in.x.size(), static_cast<size_t>(sizes[p] * kHidden));
    EXPECT_EQ(in.x[0], static_cast<float>(first));
    first += sizes[p];
  }
  fake.Complete(2);  // out of order
  fake.Complete(0);
  EXPECT_EQ(a.calls, 0);
  fake.Complete(1);
  ASSERT_EQ(a.calls, 1);
  EXPECT_TRUE(a.status->ok());
  EXPECT_EQ(a.out, Expected(10));
  EXPECT_EQ(a.routing.num_tokens, 10);  // the whole routing, with its statistics
  EXPECT_EQ(a.routing.dropped, (std::vector<int64_t>{4, 5, 6}));
}

TEST(MicroBatchesTest, TheFirstFailedPartInTokenOrderGivesTheStatus) {
  FakeDispatcher fake;
  Answer a;
  StartMicroBatched({.parts = 3, .min_tokens = 3}, MakeInput(9), nullptr, Record(a), fake.Start());
  ASSERT_EQ(fake.pending.size(), 3u);
  fake.Fail(2, grpc::StatusCode::DEADLINE_EXCEEDED, "worker b did not answer");
  fake.Complete(0);
  fake.Fail(1, grpc::StatusCode::UNAVAILABLE, "worker a is down");
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.status->error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(a.status->error_message(), "worker a is down");
  EXPECT_TRUE(a.out.empty());
}

TEST(MicroBatchesTest, APartWithTheWrongOutputSizeIsInternal) {
  FakeDispatcher fake;
  Answer a;
  StartMicroBatched({.parts = 2, .min_tokens = 2}, MakeInput(4), nullptr, Record(a), fake.Start());
  ASSERT_EQ(fake.pending.size(), 2u);
  fake.Complete(0);
  fake.Complete(1, /*extra_values=*/5);
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.status->error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(a.status->error_message().find("micro-batch 1"), std::string::npos) << a.status->error_message();
}

TEST(MicroBatchesTest, PartsAnsweringInsideStartStillJoinOnce) {
  // DispatchCall::Start answers at once when no expert is involved.
  Answer a;
  std::vector<int64_t> seen;
  StartDispatch answer_now = [&seen](DispatchInput in, grpc::CallbackServerContext*, DispatchCall::Done done) {
    seen.push_back(in.routing.num_tokens);
    std::vector<float> out(in.x.size(), 1.0f);
    done(grpc::Status::OK, out, in.routing);
  };
  StartMicroBatched({.parts = 2, .min_tokens = 2}, MakeInput(5), nullptr, Record(a), answer_now);
  EXPECT_EQ(seen, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(a.calls, 1);
  EXPECT_TRUE(a.status->ok());
  EXPECT_EQ(a.out, std::vector<float>(10, 1.0f));
}

}  // namespace
}  // namespace moe::server
