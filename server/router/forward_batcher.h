// server/router/forward_batcher.h
// The router's dynamic batching of Forwards. Each Forward is validated and gated on its own (so
// no routing policy ever sees another request's tokens); then, per (layer, wire dtype), at most
// `max_in_flight` dispatches are out at once. A Forward that finds a free slot is dispatched
// alone and at once, as before (its cancellation still reaches the workers); one that finds none
// waits, and when a dispatch of its layer finishes, everything waiting for that layer — up to
// `max_tokens` — leaves as one dispatch: inputs and routings concatenated, one call per worker
// for all of them, outputs split back. A dispatch out longer than `stall` stops holding its slot
// (a background watcher then sends what waits), so a hung worker cannot hold up a layer. A
// batched dispatch runs under its earliest member's deadline; if it fails (other than by
// cancellation or a worker's RESOURCE_EXHAUSTED), each Forward whose own deadline has not passed
// is sent again alone, so none fails for what it was batched with. Under load this turns many small RPCs into
// few large ones; idle, it adds nothing (no batching window). Dispatching is injected (Start): to
// the workers through DispatchCall, or in-process on the router's compute queue (--local). Used
// by MoeServiceImpl. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/dtype.h"
#include "router/routing.h"
#include "server/router/dispatch_call.h"

namespace moe::server {

struct ForwardBatcherOptions {
  int max_in_flight = 1;        // dispatches per (layer, dtype) before Forwards wait; 0 = never wait
  int64_t max_tokens = 8192;    // most tokens merged into one dispatch
  size_t max_waiting = 1024;    // Forwards that may wait in all; more is RESOURCE_EXHAUSTED
  // A dispatch out for longer than this no longer holds its slot (a hung worker must not hold up
  // the whole layer): the next Forward goes at once, with whatever waits.
  absl::Duration stall = absl::Milliseconds(250);
  // For stalls and deadlines; tests substitute their own.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // A thread that sends what waits once the dispatches ahead of it stall, even when no new
  // Forward arrives to notice. Unit tests with a substituted clock turn it off.
  bool watch_stalls = true;
};

class ForwardBatcher {
 public:
  // One gated Forward.
  struct Forward {
    int layer = 0;
    int num_slots = 0;  // the layer gate's experts + always-on (DispatchPlan::Build)
    model::DType dtype = model::DType::kF32;
    int64_t tokens = 0;
    std::vector<float> x;  // [tokens, hidden]
    router::Routing routing;
    std::chrono::system_clock::time_point deadline;
    grpc::CallbackServerContext* context = nullptr;
    DispatchCall::Done done;  // gets this Forward's rows of the output and its own routing
  };

  // Sends one dispatch: DispatchCall::Start on the worker pool (a fake in tests).
  using Start = std::function<void(DispatchInput in, grpc::CallbackServerContext* context, DispatchCall::Done done)>;

  // `fill_common` sets what every dispatch shares (hidden, local backend and queue, metrics,
  // config, log) on each DispatchInput.
  ForwardBatcher(Start start, std::function<void(DispatchInput&)> fill_common, ForwardBatcherOptions options);
  // Stops the stall watcher; dispatches still out call back into a destroyed batcher, so the
  // owner destroys it only after the server has finished every call.
  ~ForwardBatcher();
  ForwardBatcher(const ForwardBatcher&) = delete;
  ForwardBatcher& operator=(const ForwardBatcher&) = delete;

  // Dispatches `f` now or queues it. RESOURCE_EXHAUSTED (f untouched, done not called) when
  // max_waiting Forwards already wait; otherwise f.done is called exactly once.
  absl::Status Submit(Forward& f);

 private:
  using Lane = std::pair<int, model::DType>;
  struct LaneState {
    std::multiset<absl::Time> in_flight;  // when each dispatch holding a slot left
    std::deque<Forward> waiting;
  };
  // Under mu_: what waits in `state`, oldest first, within max_tokens (at least one).
  std::vector<Forward> TakeWaiting(LaneState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends `batch`, which holds the lane's slot `slot`, as one dispatch.
  void Dispatch(Lane lane, std::vector<Forward> batch, absl::Time slot);
  // Sends `f` on its own; gives back `slot` when done, if it holds one.
  void DispatchAlone(Lane lane, Forward f, std::optional<absl::Time> slot);
  // Gives `slot` back and sends what waits, if anything.
  void Finished(Lane lane, absl::Time slot);
  // Under mu_: the lane's dispatches that still hold a slot at `now` (out for less than stall).
  int64_t Busy(const LaneState& state, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stall watcher's loop.
  void WatchStalls();
  static void Fail(Forward& f, const grpc::Status& status);
  static grpc::Status FromAbsl(const absl::Status& status);

  const Start start_;
  const std::function<void(DispatchInput&)> fill_common_;
  const ForwardBatcherOptions options_;
  absl::Mutex mu_;
  std::map<Lane, LaneState> lanes_ ABSL_GUARDED_BY(mu_);
  size_t waiting_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;  // Forwards ever queued: wakes the watcher
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;  // last: started once everything above exists
};

}  // namespace moe::server
