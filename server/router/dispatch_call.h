// server/router/dispatch_call.h
// One networked dispatch in flight — one Forward, or several batched into one: gate and plan are
// done by the caller; this sends one ExpertService.Forward per involved worker (all at once,
// callback API, the deadline and — for a single Forward — the caller's cancellation propagated),
// runs the experts the router hosts itself (the always-on MLPs by default) on its compute queue
// meanwhile, and when the last part is done combines the outputs (in expert order, so the sum is
// deterministic) and hands them to `done`.
// Failover: a worker call that fails before any response because the worker is unreachable
// (UNAVAILABLE) or stopped answering health checks (WorkerPool cancels its calls), or answered
// NOT_FOUND because it no longer hosts an expert (live placement moved it), is re-sent
// once, per expert: each of its experts' token groups goes to a healthy replica of that expert
// (PickFailover: fewest calls in flight, ties to the lowest index), several workers if need be,
// within the same deadline. If some expert has no healthy replica, the call fails UNAVAILABLE
// naming those experts and the worker. A dispatch whose picked worker is already known down
// fails at once, naming it, instead of waiting out the deadline.
// Owns itself: deleted before `done` runs. Used by MoeServiceImpl and ForwardBatcher.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "model/dtype.h"
#include "moe/v1/moe.grpc.pb.h"
#include "router/dispatch_plan.h"
#include "router/routing.h"
#include "server/common/compute_queue.h"
#include "server/common/rate_limited_log.h"
#include "server/router/router_metrics.h"
#include "server/router/worker_pool.h"

namespace moe::server {

struct DispatchInput {
  int layer = 0;
  int64_t hidden = 0;
  std::vector<float> x;  // [tokens, hidden] f32
  model::DType wire_dtype = model::DType::kF32;  // of the request(s); used to and from workers
  router::Routing routing;
  router::DispatchPlan plan;
  std::chrono::system_clock::time_point deadline;
  // Experts this backend hosts run in the router, on `local_queue` (both may be null).
  experts::ExpertBackend* local_backend = nullptr;
  ComputeQueue* local_queue = nullptr;
  RouterMetrics* metrics = nullptr;  // may be null
  const model::ModelConfig* config = nullptr;  // for the replicas gauge when a worker changes state
  RateLimitedLog* log = nullptr;     // warnings for failed dispatches; may be null
  // Send each token once per worker with its (expert, weight) pairs there and take back one
  // weighted sum per token (ExpertRequest's each-token-once form), instead of one row per pair.
  // Not with Routing::weight_on_input (a pair's weight scales its input there).
  bool each_token_once = true;
};

// Adds the routing of every token to `response` (routed experts; the always-on weight apart).
void AddRouting(const router::Routing& routing, moe::v1::ForwardResponse* response);

class DispatchCall {
 public:
  // Called exactly once, from a gRPC or compute thread (or from Start when no expert is
  // involved): the status, the combined output [tokens, hidden] in f32 (empty on failure; valid
  // during the call only), and the routing the dispatch was made for.
  using Done = std::function<void(const grpc::Status& status, absl::Span<const float> output,
                                  const router::Routing& routing)>;
  // Starts the worker calls. Worker calls are children of `server_context` (deadline and
  // cancellation propagate) when it is not null, else plain calls with `input.deadline`.
  static void Start(WorkerPool* pool, DispatchInput input, grpc::CallbackServerContext* server_context, Done done);

 private:
  struct WorkerCall {
    int worker = -1;
    std::vector<int> experts;  // ascending
    int64_t rows = 0;          // rows sent: pairs, or tokens in the each-token-once form
    std::vector<int32_t> tokens;  // each-token-once form: the token of each row sent (ascending)
    std::shared_ptr<TrackedCall> tracked;  // the ClientContext, shared with the health checker
    moe::v1::ExpertRequest request;
    moe::v1::ExpertResponse response;
    grpc::Status status;
    bool retried = false;   // a failover call: not failed over again
    bool replaced = false;  // failed over: its experts' outputs come from other calls
    absl::Time issued;
  };

  DispatchCall(WorkerPool* pool, DispatchInput input, grpc::CallbackServerContext* server_context, Done done);
  // OK, or UNAVAILABLE when an expert's only replicas are known down (nothing is sent then).
  grpc::Status BuildCalls();
  // Fills call.request (and call.rows, call.tokens) with the rows of call.experts, in the form
  // each_token_once_ says.
  void FillRequest(WorkerCall& call);
  void StartLocal();
  void Issue(WorkerCall& call);
  void OnReply(WorkerCall& call, grpc::Status status);
  // Re-sends a failed call's groups per expert; false (nothing sent) if an expert has no healthy
  // replica, with call.status saying which.
  bool FailOver(WorkerCall& call);
  void PartDone();
  void Complete();
  grpc::Status Combine(std::vector<float>& out);
  grpc::Status DescribeFailure(const WorkerCall& call) const;

  WorkerPool* const pool_;
  DispatchInput in_;
  grpc::CallbackServerContext* const server_context_;  // may be null (a batch)
  Done done_;
  // Grown by FailOver on reply threads, under calls_mu_; read without it only once every part is
  // done (Complete, after pending_ reached 0).
  absl::Mutex calls_mu_;
  std::vector<std::unique_ptr<WorkerCall>> calls_;
  std::vector<int> call_of_expert_;        // expert → index into calls_; kLocal; -1 if no rows
  std::vector<int64_t> offset_of_expert_;  // expert → first row within its call / local block
  grpc::Status early_status_;              // BuildCalls' refusal
  static constexpr int kLocal = -2;
  std::vector<int> local_experts_;
  int64_t local_rows_ = 0;
  std::vector<float> local_in_, local_out_;
  absl::Status local_status_;
  std::atomic<int> pending_{0};
  bool each_token_once_ = false;  // in_.each_token_once, unless the routing weighs inputs
};

}  // namespace moe::server
