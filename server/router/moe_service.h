// server/router/moe_service.h
// MoeService (moe.v1), the router's public API. Forward validates the request and gates it,
// then hands it to ForwardBatcher, which merges concurrent Forwards of a layer and either runs
// the experts in-process on the compute queue (--local) or dispatches them to the workers
// (DispatchCall); GetModelInfo describes the model, routing and placement.
// Thin: the work lives in router/ and DispatchCall. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "experts/expert_backend.h"
#include "moe/v1/moe.grpc.pb.h"
#include "router/moe_model.h"
#include "server/common/compute_queue.h"
#include "server/common/rate_limited_log.h"
#include "server/router/forward_batcher.h"
#include "server/router/micro_batches.h"
#include "server/router/router_metrics.h"
#include "server/common/token_auth.h"
#include "server/router/expert_load.h"
#include "server/router/worker_pool.h"

namespace moe::server {

// What a Forward does when some expert it routes to has no live worker (networked mode).
enum class OnUnavailable {
  kFail,     // UNAVAILABLE naming the experts and workers (default)
  kReroute,  // those tokens go to their next-best live experts (renormalised); token-choice only,
             // else (or with fewer than top_k live experts) as kDrop
  kDrop,     // those experts' contributions are left out; the others keep their weights
};

struct MoeServiceOptions {
  std::string model_name = "default";
  int64_t max_tokens = 8192;
  absl::Duration default_deadline = absl::Seconds(30);  // when the caller sets none
  // Dispatches (to the workers, or to the local compute queue) per layer before concurrent
  // Forwards wait and leave together as one (ForwardBatcher); 0 = each on its own at once.
  int max_batches_in_flight = 1;
  // A dispatch out longer than this stops holding up its layer's waiting Forwards.
  absl::Duration batch_stall = absl::Milliseconds(250);
  OnUnavailable on_unavailable = OnUnavailable::kFail;
  // Forwards admitted and not yet answered (unary, stream steps and ModelInfer together); one
  // more is refused at once with RESOURCE_EXHAUSTED, so overload never turns into timeouts.
  int max_inflight = 256;
  // Networked: each token crosses to a worker once with its experts there, and one weighted sum
  // per token comes back (DispatchInput::each_token_once); false: one row per (token, expert).
  bool each_token_once = true;
  // Networked: dispatches of at least min_tokens tokens leave as `parts` micro-batches at once,
  // overlapping transfer and compute (server/router/micro_batches.h); parts = 1 is the serial path.
  MicroBatching micro_batching;
};

// Forward is a raw method (it parses the request bytes itself), so that bytes that are not a
// ForwardRequest get INVALID_ARGUMENT saying so, not gRPC's own bare error; GetModelInfo is typed.
class MoeServiceImpl final
    : public moe::v1::MoeService::WithRawCallbackMethod_Forward<moe::v1::MoeService::WithCallbackMethod_GetModelInfo<
          moe::v1::MoeService::WithCallbackMethod_ForwardStream<moe::v1::MoeService::Service>>> {
 public:
  // Experts in-process on `backend`, computed on `queue` (both must outlive the service).
  static std::unique_ptr<MoeServiceImpl> Local(MoeServiceOptions options,
                                               std::shared_ptr<const router::MoeModel> model,
                                               experts::ExpertBackend* backend, ComputeQueue* queue);
  // Routed experts on `workers`; the experts `local_backend` hosts (the always-on MLPs unless
  // they are placed on workers; may be null) run in the router on `queue`. All must outlive
  // the service.
  static std::unique_ptr<MoeServiceImpl> Networked(MoeServiceOptions options,
                                                   std::shared_ptr<const router::MoeModel> model,
                                                   WorkerPool* workers, experts::ExpertBackend* local_backend,
                                                   ComputeQueue* queue);

  // Where each routing's pairs are counted for the placement controller (null: nowhere); call
  // before serving.
  void SetExpertLoad(ExpertLoad* load) { load_ = load; }
  // Bearer-token authentication of every call but health (null: none); call before serving.
  void SetAuth(TokenAuth* auth) { auth_ = auth; }
  // OK, or UNAUTHENTICATED (counted in the metrics as `method`) when a token is required.
  absl::Status Authorize(const grpc::CallbackServerContext* context, RpcMethod method);

  // Metrics and warnings (both may stay null); call before serving.
  void SetObservability(RouterMetrics* metrics, RateLimitedLog* log) {
    metrics_ = metrics;
    log_ = log;
  }

  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const moe::v1::GetModelInfoRequest* request,
                                         moe::v1::GetModelInfoResponse* response) override;

  // One stream of Forwards, each handled as Forward is, answered in order; the first failure
  // ends the stream with its status (server/router/forward_stream.h).
  grpc::ServerBidiReactor<moe::v1::ForwardRequest, moe::v1::ForwardResponse>* ForwardStream(
      grpc::CallbackServerContext* context) override;

  using Finish = std::function<void(const grpc::Status&)>;
  // What Forward does, for another front end on the same server (OipService): validates, gates
  // and dispatches `request`, fills `response`, then calls `finish` exactly once (from a gRPC or
  // compute thread). `request` and `response` must live until then. Counted in the metrics as
  // `method`.
  void ForwardAsync(grpc::CallbackServerContext* context, const moe::v1::ForwardRequest* request,
                    moe::v1::ForwardResponse* response, RpcMethod method, Finish finish);
  const std::string& model_name() const { return options_.model_name; }
  const router::MoeModel& model() const { return *model_; }
  // Whether every routed expert of every MoE layer has a worker up (always true with --local).
  bool CanServeEveryExpert() const;

 private:
  struct Validated {
    const router::MoeLayer* layer = nullptr;
    model::DType dtype = model::DType::kF32;
    int64_t tokens = 0;
    std::vector<float> x;
  };
  MoeServiceImpl(MoeServiceOptions options, std::shared_ptr<const router::MoeModel> model)
      : options_(std::move(options)), model_(std::move(model)) {}
  // INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED per conventions.md.
  absl::StatusOr<Validated> Validate(const moe::v1::ForwardRequest& request) const;
  // Gates `v` (in degraded mode routing around experts that are down) and dispatches it; with
  // `retry_once`, a dispatch failing UNAVAILABLE is gated and dispatched once more.
  void GateAndDispatch(Validated v, grpc::CallbackServerContext* context, const moe::v1::ForwardRequest* request,
                       moe::v1::ForwardResponse* response, Finish finish, bool retry_once);
  // Degraded mode: reroutes or drops the pairs of `routing` on experts no live worker hosts;
  // per token the experts it lost (null if none), counted in the metrics.
  std::shared_ptr<const std::vector<std::vector<int>>> Degrade(const Validated& v, router::Routing& routing) const;
  // Hands a gated Forward to the batcher; `finish` gets its status once its output is encoded
  // (with `affected`, marked degraded).
  void Dispatch(Validated v, router::Routing routing, std::shared_ptr<const std::vector<std::vector<int>>> affected,
                grpc::CallbackServerContext* context,
                const moe::v1::ForwardRequest* request, moe::v1::ForwardResponse* response, Finish finish);
  void MakeBatcher(ForwardBatcher::Start start);
  // --local: one (possibly batched) dispatch as a task on the compute queue.
  void RunLocal(DispatchInput in, DispatchCall::Done done);
  // What every dispatch shares.
  void FillCommon(DispatchInput& in) const;

  const MoeServiceOptions options_;
  const std::shared_ptr<const router::MoeModel> model_;
  experts::ExpertBackend* backend_ = nullptr;  // every expert (--local) or the router-hosted ones
  ComputeQueue* queue_ = nullptr;
  WorkerPool* workers_ = nullptr;              // networked
  std::unique_ptr<ForwardBatcher> batcher_;    // every Forward goes through it
  RouterMetrics* metrics_ = nullptr;
  RateLimitedLog* log_ = nullptr;
  TokenAuth* auth_ = nullptr;
  ExpertLoad* load_ = nullptr;
  std::atomic<int> inflight_{0};  // admitted Forwards (max_inflight)
};

// A caller's string as errors quote it: at most 64 bytes, so that a huge model name cannot push
// the reply past the client's metadata limit (and be reported as that instead).
std::string Shortened(absl::string_view text);

// Fills the parts of GetModelInfoResponse that come from the model alone (dims, each layer's
// routing spec, parameter counts). Exposed for tests.
void DescribeModel(const router::MoeModel& model, moe::v1::GetModelInfoResponse* info);

}  // namespace moe::server
