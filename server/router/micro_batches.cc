// server/router/micro_batches.cc
#include "server/router/micro_batches.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace moe::server {
namespace {

// What the micro-batches of one dispatch fill in, and who gets it when the last is done.
struct Join {
  int64_t hidden = 0;
  std::vector<float> out;   // [tokens, hidden]
  router::Routing routing;  // the whole dispatch's
  DispatchCall::Done done;
  std::atomic<int> pending{0};
  absl::Mutex mu;
  int failed_part = -1;  // the first (in token order) that failed, under mu
  grpc::Status status;   // its status, under mu
};

void PartDone(Join& join, int part, int64_t first_token, int64_t part_tokens, grpc::Status status,
              absl::Span<const float> output) {
  if (status.ok() && output.size() != static_cast<size_t>(part_tokens * join.hidden)) {
    status = grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("micro-batch ", part, " came back with ", output.size(), " values for ",
                                       part_tokens, " tokens of ", join.hidden));
  }
  if (status.ok()) {
    std::copy(output.begin(), output.end(), join.out.begin() + first_token * join.hidden);
  } else {
    absl::MutexLock lock(&join.mu);
    if (join.failed_part < 0 || part < join.failed_part) {
      join.failed_part = part;
      join.status = status;
    }
  }
  if (join.pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  grpc::Status final_status;
  {
    absl::MutexLock lock(&join.mu);
    final_status = join.status;
  }
  join.done(final_status, final_status.ok() ? absl::Span<const float>(join.out) : absl::Span<const float>(),
            join.routing);
}

}  // namespace

void StartMicroBatched(const MicroBatching& options, DispatchInput in, grpc::CallbackServerContext* context,
                       DispatchCall::Done done, const StartDispatch& start) {
  const int64_t tokens = in.routing.num_tokens;
  const int parts = static_cast<int>(std::min<int64_t>(options.parts, tokens));
  if (parts <= 1 || tokens < options.min_tokens) {
    start(std::move(in), context, std::move(done));
    return;
  }
  const int num_slots = in.plan.num_experts();
  auto join = std::make_shared<Join>();
  join->hidden = in.hidden;
  join->out.resize(static_cast<size_t>(tokens * in.hidden));
  join->done = std::move(done);
  join->pending.store(parts, std::memory_order_relaxed);
  std::vector<DispatchInput> inputs(static_cast<size_t>(parts));
  std::vector<int64_t> first_tokens(static_cast<size_t>(parts) + 1, tokens);
  for (int p = 0; p < parts; ++p) {
    const int64_t begin = tokens * p / parts, end = tokens * (p + 1) / parts;
    DispatchInput& part = inputs[static_cast<size_t>(p)];
    part.layer = in.layer;
    part.hidden = in.hidden;
    part.wire_dtype = in.wire_dtype;
    part.deadline = in.deadline;
    part.local_backend = in.local_backend;
    part.local_queue = in.local_queue;
    part.metrics = in.metrics;
    part.config = in.config;
    part.log = in.log;
    part.each_token_once = in.each_token_once;
    part.x.assign(in.x.begin() + begin * in.hidden, in.x.begin() + end * in.hidden);
    part.routing = router::Slice(in.routing, begin, end);
    first_tokens[static_cast<size_t>(p)] = begin;
  }
  join->routing = std::move(in.routing);
  for (int p = 0; p < parts; ++p) {
    DispatchInput& part = inputs[static_cast<size_t>(p)];
    const int64_t first = first_tokens[static_cast<size_t>(p)];
    const int64_t count = first_tokens[static_cast<size_t>(p) + 1] - first;
    absl::StatusOr<router::DispatchPlan> plan = router::DispatchPlan::Build(part.routing, num_slots);
    if (!plan.ok()) {  // cannot happen for a slice of a routing that had a plan; fail the part
      PartDone(*join, p, first, count,
               grpc::Status(static_cast<grpc::StatusCode>(plan.status().code()), std::string(plan.status().message())),
               {});
      continue;
    }
    part.plan = *std::move(plan);
    start(std::move(part), context,
          [join, p, first, count](const grpc::Status& status, absl::Span<const float> output,
                                  const router::Routing&) { PartDone(*join, p, first, count, status, output);
          });
  }
}

}  // namespace moe::server
