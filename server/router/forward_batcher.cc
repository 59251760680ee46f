// server/router/forward_batcher.cc
#include "server/router/forward_batcher.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "router/dispatch_plan.h"

namespace moe::server {

ForwardBatcher::ForwardBatcher(Start start, std::function<void(DispatchInput&)> fill_common,
                               ForwardBatcherOptions options)
    : start_(std::move(start)), fill_common_(std::move(fill_common)), options_(std::move(options)) {
  if (options_.watch_stalls && options_.max_in_flight > 0) watcher_ = std::thread([this] { WatchStalls(); });
}

ForwardBatcher::~ForwardBatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
}

int64_t ForwardBatcher::Busy(const LaneState& state, absl::Time now) const {
  return std::distance(state.in_flight.upper_bound(now - options_.stall), state.in_flight.end());
}

void ForwardBatcher::WatchStalls() {
  struct Ready {
    Lane lane;
    std::vector<Forward> batch;
    absl::Time slot;
  };
  mu_.Lock();
  while (!stopping_) {
    // Send what waits where the dispatches ahead have stalled; else sleep until the first will.
    const absl::Time now = options_.clock();
    absl::Time wake = absl::InfiniteFuture();
    std::vector<Ready> ready;
    for (auto& [lane, state] : lanes_) {
      if (state.waiting.empty()) continue;
      if (Busy(state, now) < options_.max_in_flight) {
        ready.push_back({lane, TakeWaiting(state), now});
        state.in_flight.insert(now);
        continue;
      }
      // Blocked by its max_in_flight youngest dispatches: free when the oldest of them stalls.
      auto oldest_blocking = std::prev(state.in_flight.end(), options_.max_in_flight);
      wake = std::min(wake, *oldest_blocking + options_.stall);
    }
    if (!ready.empty()) {
      mu_.Unlock();
      for (Ready& r : ready) Dispatch(r.lane, std::move(r.batch), r.slot);
      mu_.Lock();
      continue;
    }
    const uint64_t seen = queued_;
    struct Wake {
      const ForwardBatcher* b;
      uint64_t seen;
    } w{this, seen};
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](Wake* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                return w->b->stopping_ || w->b->queued_ != w->seen;
                              },
                              &w),
                          wake);
  }
  mu_.Unlock();
}

absl::Status ForwardBatcher::Submit(Forward& f) {
  const Lane lane{f.layer, f.dtype};
  std::vector<Forward> batch;
  absl::Time slot;
  {
    absl::MutexLock lock(&mu_);
    LaneState& state = lanes_[lane];
    slot = options_.clock();
    // Dispatches out for longer than `stall` do not count: a hung worker must not hold the layer.
    if (options_.max_in_flight > 0 && Busy(state, slot) >= options_.max_in_flight) {
      if (waiting_ >= options_.max_waiting) {
        return absl::ResourceExhaustedError(
            absl::StrCat("router queue full (", options_.max_waiting, " requests waiting for a dispatch)"));
      }
      state.waiting.push_back(std::move(f));
      ++waiting_;
      ++queued_;
      return absl::OkStatus();
    }
    // A slot is free. Whatever still waits (behind a stalled dispatch) is older: it goes first.
    state.waiting.push_back(std::move(f));
    ++waiting_;
    batch = TakeWaiting(state);
    state.in_flight.insert(slot);
  }
  Dispatch(lane, std::move(batch), slot);
  return absl::OkStatus();
}

std::vector<ForwardBatcher::Forward> ForwardBatcher::TakeWaiting(LaneState& state) {
  std::vector<Forward> batch;
  int64_t tokens = 0;
  while (!state.waiting.empty() && (batch.empty() || tokens + state.waiting.front().tokens <= options_.max_tokens)) {
    tokens += state.waiting.front().tokens;
    batch.push_back(std::move(state.waiting.front()));
    state.waiting.pop_front();
    --waiting_;
  }
  return batch;
}

void ForwardBatcher::Finished(Lane lane, absl::Time slot) {
  std::vector<Forward> next;
  absl::Time next_slot;
  {
    absl::MutexLock lock(&mu_);
    LaneState& state = lanes_[lane];
    state.in_flight.erase(state.in_flight.find(slot));
    next = TakeWaiting(state);
    if (next.empty()) return;
    next_slot = options_.clock();
    state.in_flight.insert(next_slot);
  }
  Dispatch(lane, std::move(next), next_slot);
}

void ForwardBatcher::Dispatch(Lane lane, std::vector<Forward> batch, absl::Time slot) {
  // Whoever was cancelled or ran out of time while waiting leaves now, without a dispatch.
  const auto now = absl::ToChronoTime(options_.clock());
  std::vector<Forward> live;
  for (Forward& f : batch) {
    if (batch.size() > 1 && f.context != nullptr && f.context->IsCancelled()) {
      Fail(f, grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while waiting for a dispatch"));
    } else if (batch.size() > 1 && f.deadline < now) {
      Fail(f, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed while waiting for a dispatch"));
    } else {
      live.push_back(std::move(f));
    }
  }
  if (live.empty()) {
    Finished(lane, slot);
    return;
  }
  DispatchInput in;
  fill_common_(in);
  if (in.metrics != nullptr) in.metrics->RecordBatch(live.size());
  if (live.size() == 1) {
    DispatchAlone(lane, std::move(live.front()), slot);
    return;
  }
  // Several: one input, one routing (tokens renumbered), one dispatch; the members keep their
  // own inputs and routings, for their answers and for a retry.
  auto members = std::make_shared<std::vector<Forward>>(std::move(live));
  std::vector<const router::Routing*> routings;
  int64_t tokens = 0;
  in.layer = lane.first;
  in.wire_dtype = lane.second;
  // The earliest member's deadline: if the dispatch runs out of time, the others still have some
  // to go again alone (below), so that none waits out another's deadline on a hung worker.
  in.deadline = members->front().deadline;
  for (const Forward& f : *members) {
    routings.push_back(&f.routing);
    tokens += f.tokens;
    in.deadline = std::min(in.deadline, f.deadline);
  }
  in.x.resize(static_cast<size_t>(tokens * in.hidden));
  float* at = in.x.data();
  for (const Forward& f : *members) at = std::copy(f.x.begin(), f.x.end(), at);
  in.routing = router::Concatenate(routings);
  absl::StatusOr<router::DispatchPlan> plan = router::DispatchPlan::Build(in.routing, members->front().num_slots);
  if (!plan.ok()) {
    for (Forward& f : *members) Fail(f, FromAbsl(plan.status()));
    Finished(lane, slot);
    return;
  }
  in.plan = *std::move(plan);
  const int64_t hidden = in.hidden;
  start_(std::move(in), /*context=*/nullptr,
         [this, lane, slot, members, hidden](const grpc::Status& status, absl::Span<const float> out,
                                             const router::Routing&) {
           // Not for CANCELLED (the router stopping) nor RESOURCE_EXHAUSTED (a worker full: sending
           // each member again would only add load).
           if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED &&
               status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
             // A Forward must not fail for what it was batched with (say, a token needing an
             // expert whose worker is down or hung): each that still has time goes again alone
             // and gets its own answer; one whose deadline has passed gets the batch's status.
             const auto now = absl::ToChronoTime(options_.clock());
             for (Forward& f : *members) {
               if (f.deadline > now) {
                 DispatchAlone(lane, std::move(f), std::nullopt);
               } else {
                 f.done(status, {}, f.routing);
               }
             }
             Finished(lane, slot);
             return;
           }
           int64_t row = 0;
           for (Forward& f : *members) {
             // Each member's rows, in place: no copy.
             const absl::Span<const float> mine =
                 status.ok() ? out.subspan(row * hidden, f.tokens * hidden) : absl::Span<const float>();
             row += f.tokens;
             f.done(status, mine, f.routing);
           }
           Finished(lane, slot);
         });
}

void ForwardBatcher::DispatchAlone(Lane lane, Forward f, std::optional<absl::Time> slot) {
  DispatchInput in;
  fill_common_(in);
  in.layer = lane.first;
  in.wire_dtype = lane.second;
  in.x = std::move(f.x);
  in.routing = std::move(f.routing);
  in.deadline = f.deadline;
  absl::StatusOr<router::DispatchPlan> plan = router::DispatchPlan::Build(in.routing, f.num_slots);
  if (!plan.ok()) {
    f.done(FromAbsl(plan.status()), {}, in.routing);
    if (slot.has_value()) Finished(lane, *slot);
    return;
  }
  in.plan = *std::move(plan);
  start_(std::move(in), f.context,
         [this, lane, slot, done = std::move(f.done)](const grpc::Status& status, absl::Span<const float> out,
                                                      const router::Routing& routing) {
           done(status, out, routing);
           if (slot.has_value()) Finished(lane, *slot);
         });
}

void ForwardBatcher::Fail(Forward& f, const grpc::Status& status) {
  f.done(status, {}, f.routing);
}

grpc::Status ForwardBatcher::FromAbsl(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace moe::server
