// server/router/dispatch_call.cc
#include "server/router/dispatch_call.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/tensor_codec.h"
#include "router/combine.h"

namespace moe::server {

void DispatchCall::Start(WorkerPool* pool, DispatchInput input, grpc::CallbackServerContext* server_context,
                         Done done) {
  auto* call = new DispatchCall(pool, std::move(input), server_context, std::move(done));
  call->early_status_ = call->BuildCalls();
  if (!call->early_status_.ok()) {
    call->Complete();
    return;
  }
  const bool local = !call->local_experts_.empty();
  const int parts = static_cast<int>(call->calls_.size()) + (local ? 1 : 0);
  if (parts == 0) {
    call->Complete();
    return;
  }
  // Count every part before starting any, so an early finisher cannot complete the step.
  call->pending_.store(parts);
  std::vector<WorkerCall*> to_issue;
  for (auto& c : call->calls_) to_issue.push_back(c.get());
  if (local) call->StartLocal();
  for (WorkerCall* c : to_issue) call->Issue(*c);
}

void AddRouting(const router::Routing& routing, moe::v1::ForwardResponse* response) {
  for (int64_t t = 0; t < routing.num_tokens; ++t) {
    moe::v1::TokenRouting* r = response->add_routing();
    auto experts = routing.ExpertsOf(t);
    auto weights = routing.WeightsOf(t);
    for (size_t j = 0; j < experts.size(); ++j) {
      if (experts[j] == routing.num_experts) {
        r->set_always_on_weight(weights[j]);
        continue;
      }
      r->add_experts(experts[j]);
      r->add_weights(weights[j]);
    }
  }
}

DispatchCall::DispatchCall(WorkerPool* pool, DispatchInput input, grpc::CallbackServerContext* server_context,
                           Done done)
    : pool_(pool), in_(std::move(input)), server_context_(server_context), done_(std::move(done)) {}

grpc::Status DispatchCall::BuildCalls() {
  const router::DispatchPlan& plan = in_.plan;
  each_token_once_ = in_.each_token_once && plan.row_input_scales().empty();
  const int num_experts = plan.num_experts();
  call_of_expert_.assign(num_experts, -1);
  offset_of_expert_.assign(num_experts, 0);
  std::vector<int> call_of_worker(pool_->size(), -1);
  for (int e = 0; e < num_experts; ++e) {
    if (plan.RowsOf(e) == 0) continue;
    if (in_.local_backend != nullptr && in_.local_backend->Hosts({in_.layer, e})) {
      call_of_expert_[e] = kLocal;
      offset_of_expert_[e] = local_rows_;
      local_experts_.push_back(e);
      local_rows_ += plan.RowsOf(e);
      continue;
    }
    const int worker = pool_->Pick({in_.layer, e});
    if (worker < 0) {  // coverage was checked at start; live placement never removes a last replica
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("no worker hosts expert ", e, " of layer ", in_.layer));
    }
    if (!pool_->IsHealthy(worker)) {  // Pick prefers healthy replicas: every one of e's is down
      std::vector<std::string> down;
      for (int w : pool_->ReplicasOf({in_.layer, e})) down.push_back(pool_->worker(w).address);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("expert ", e, " of layer ", in_.layer, " on worker",
                                       down.size() == 1 ? " " : "s ", absl::StrJoin(down, ", "),
                                       " is unavailable: ", down.size() == 1 ? "it does" : "they do",
                                       " not answer health checks"));
    }
    // (A worker added while this dispatch was being planned has an index past the first size.)
    if (worker >= static_cast<int>(call_of_worker.size())) call_of_worker.resize(worker + 1, -1);
    if (call_of_worker[worker] < 0) {
      call_of_worker[worker] = static_cast<int>(calls_.size());
      calls_.push_back(std::make_unique<WorkerCall>());
      calls_.back()->worker = worker;
    }
    WorkerCall& call = *calls_[call_of_worker[worker]];
    call_of_expert_[e] = call_of_worker[worker];
    offset_of_expert_[e] = call.rows;
    call.experts.push_back(e);
    call.rows += plan.RowsOf(e);
  }
  for (auto& c : calls_) FillRequest(*c);
  return grpc::Status::OK;
}

void DispatchCall::FillRequest(WorkerCall& c) {
  const router::DispatchPlan& plan = in_.plan;
  const size_t elem = model::DTypeSize(in_.wire_dtype);
  c.request.set_layer(in_.layer);
  moe::v1::Tensor* tokens = c.request.mutable_tokens();
  tokens->set_dtype(proto::ToWireDType(in_.wire_dtype));
  std::string* data = tokens->mutable_data();
  if (each_token_once_) {
    // (token, expert, weight) of every row of these experts, then by token: each token's pairs
    // stay in ascending expert order (the experts are ascending and the sort is stable).
    struct Pair {
      int32_t token, expert;
      float weight;
    };
    std::vector<Pair> pairs;
    for (int e : c.experts) {
      for (int64_t r = plan.ExpertBegin(e); r < plan.ExpertEnd(e); ++r) {
        pairs.push_back({plan.row_tokens()[r], e, plan.row_weights()[r]});
      }
    }
    std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) { return a.token < b.token; });
    c.tokens.clear();
    for (const Pair& p : pairs) {
      if (c.tokens.empty() || c.tokens.back() != p.token) {
        c.tokens.push_back(p.token);
        c.request.add_pair_counts(0);
      }
      c.request.set_pair_counts(c.request.pair_counts_size() - 1, c.request.pair_counts(c.request.pair_counts_size() - 1) + 1);
      c.request.add_pair_experts(p.expert);
      c.request.add_pair_weights(p.weight);
    }
    c.rows = static_cast<int64_t>(c.tokens.size());
    tokens->add_shape(c.rows);
    tokens->add_shape(in_.hidden);
    data->resize(static_cast<size_t>(c.rows * in_.hidden) * elem);
    char* dst = data->data();
    for (int32_t t : c.tokens) {
      model::ConvertFromF32(in_.wire_dtype, in_.x.data() + static_cast<int64_t>(t) * in_.hidden, dst, in_.hidden);
      dst += in_.hidden * elem;
    }
    return;
  }
  tokens->add_shape(c.rows);
  tokens->add_shape(in_.hidden);
  data->resize(static_cast<size_t>(c.rows * in_.hidden) * elem);
  char* dst = data->data();
  for (int e : c.experts) {
    moe::v1::ExpertGroup* g = c.request.add_groups();
    g->set_expert(e);
    g->set_num_rows(plan.RowsOf(e));
    std::vector<float> scaled;  // Routing::weight_on_input: the row times its weight
    for (int64_t r = plan.ExpertBegin(e); r < plan.ExpertEnd(e); ++r) {
      const float* src = in_.x.data() + static_cast<int64_t>(plan.row_tokens()[r]) * in_.hidden;
      if (!plan.row_input_scales().empty()) {
        scaled.resize(in_.hidden);
        plan.Gather(in_.x, in_.hidden, r, 1, scaled.data());
        src = scaled.data();
      }
      model::ConvertFromF32(in_.wire_dtype, src, dst, in_.hidden);
      dst += in_.hidden * elem;
    }
  }
}

void DispatchCall::StartLocal() {
  const router::DispatchPlan& plan = in_.plan;
  local_in_.resize(static_cast<size_t>(local_rows_ * in_.hidden));
  local_out_.resize(local_in_.size());
  std::vector<experts::ExpertGroup> groups;
  for (int e : local_experts_) {
    plan.Gather(in_.x, in_.hidden, plan.ExpertBegin(e), plan.RowsOf(e), local_in_.data() + offset_of_expert_[e] * in_.hidden);
    groups.push_back({{in_.layer, e}, offset_of_expert_[e], plan.RowsOf(e)});
  }
  absl::Status queued = in_.local_queue->Submit([this, groups = std::move(groups)] {
    local_status_ = in_.local_backend->Run(groups, local_in_, absl::MakeSpan(local_out_));
    PartDone();
  });
  if (!queued.ok()) {
    local_status_ = queued;
    PartDone();
  }
}

void DispatchCall::PartDone() {
  if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) Complete();
}

void DispatchCall::Issue(WorkerCall& call) {
  call.tracked = std::make_shared<TrackedCall>();
  call.tracked->context = server_context_ != nullptr ? grpc::ClientContext::FromCallbackServerContext(*server_context_)
                                                     : std::make_unique<grpc::ClientContext>();
  call.tracked->context->set_deadline(in_.deadline);
  WorkerPool::Worker& worker = pool_->worker(call.worker);
  const int inflight = worker.inflight.fetch_add(1, std::memory_order_relaxed) + 1;
  if (in_.metrics != nullptr) in_.metrics->SetInflight(call.worker, inflight);
  call.issued = absl::Now();
  pool_->Track(call.worker, call.tracked);  // before the call starts: a cancel cannot miss it
  worker.stub->async()->Forward(call.tracked->context.get(), &call.request, &call.response,
                                [this, &call](grpc::Status status) { OnReply(call, std::move(status)); });
}

void DispatchCall::OnReply(WorkerCall& call, grpc::Status status) {
  pool_->Untrack(call.worker, call.tracked.get());
  if (status.error_code() == grpc::StatusCode::CANCELLED) {
    if (call.tracked->worker_lost.load(std::memory_order_acquire)) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the worker stopped answering health checks");
    } else if (server_context_ == nullptr || !server_context_->IsCancelled()) {
      // Not our caller's cancellation: the worker's (a draining worker cancels what it will not run).
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            absl::StrCat("the worker cancelled the call (draining?): ", status.error_message()));
    }
  }
  const int inflight = pool_->worker(call.worker).inflight.fetch_sub(1, std::memory_order_relaxed) - 1;
  if (in_.metrics != nullptr) {
    in_.metrics->SetInflight(call.worker, inflight);
    in_.metrics->RecordDispatch(call.worker, absl::Now() - call.issued);
    in_.metrics->RecordBytes(call.worker, call.request.tokens().data().size(),
                             status.ok() ? call.response.outputs().data().size() : 0);
  }
  if (pool_->ReportOutcome(call.worker, status) && in_.metrics != nullptr) {
    in_.metrics->SetUp(call.worker, status.error_code() != grpc::StatusCode::UNAVAILABLE);
    if (in_.config != nullptr) {
      const std::vector<int> replicas = pool_->AvailableReplicas(*in_.config);
      for (size_t e = 0; e < replicas.size(); ++e) in_.metrics->SetAvailableReplicas(static_cast<int>(e), replicas[e]);
    }
  }
  if (!status.ok() && in_.log != nullptr) {
    in_.log->Warn(pool_->worker(call.worker).address,
                  absl::StrCat("dispatch to worker ", pool_->worker(call.worker).address, " failed: ",
                               status.error_code(), " ", status.error_message()));
  }
  call.status = std::move(status);
  // A unary call that failed UNAVAILABLE got no response: its experts' groups can go elsewhere. So
  // can those of a call answered NOT_FOUND: the worker no longer hosts an expert (live placement
  // unloaded it after this dispatch picked the worker).
  const grpc::StatusCode code = call.status.error_code();
  if ((code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::NOT_FOUND) && !call.retried &&
      FailOver(call)) {
    return;
  }
  PartDone();
}

bool DispatchCall::FailOver(WorkerCall& failed) {
  const int num = static_cast<int>(failed.experts.size());
  std::vector<int> target(num);
  std::vector<int> stranded;
  for (int j = 0; j < num; ++j) {
    target[j] = pool_->PickFailover({in_.layer, failed.experts[j]}, failed.worker);
    if (target[j] < 0) stranded.push_back(failed.experts[j]);
  }
  if (!stranded.empty()) {
    failed.status = grpc::Status(
        failed.status.error_code(),
        absl::StrCat(failed.status.error_message(), "; no healthy replica for ",
                     stranded.size() == 1 ? "expert " : "experts ", absl::StrJoin(stranded, ","), " to fail over to"));
    return false;
  }
  // One new call per target worker with the rows of its experts, in expert order.
  std::vector<std::unique_ptr<WorkerCall>> fresh;
  std::vector<int> fresh_of_worker(pool_->size(), -1);
  std::vector<int64_t> offsets(num);
  for (int j = 0; j < num; ++j) {
    const int e = failed.experts[j];
    if (target[j] >= static_cast<int>(fresh_of_worker.size())) fresh_of_worker.resize(target[j] + 1, -1);
    if (fresh_of_worker[target[j]] < 0) {
      fresh_of_worker[target[j]] = static_cast<int>(fresh.size());
      fresh.push_back(std::make_unique<WorkerCall>());
      fresh.back()->worker = target[j];
      fresh.back()->retried = true;
    }
    WorkerCall& c = *fresh[fresh_of_worker[target[j]]];
    offsets[j] = c.rows;
    c.experts.push_back(e);
    c.rows += in_.plan.RowsOf(e);
  }
  for (auto& c : fresh) FillRequest(*c);
  std::vector<WorkerCall*> to_issue;
  {
    absl::MutexLock lock(&calls_mu_);
    const int first = static_cast<int>(calls_.size());
    for (int j = 0; j < num; ++j) {
      call_of_expert_[failed.experts[j]] = first + fresh_of_worker[target[j]];
      offset_of_expert_[failed.experts[j]] = offsets[j];
    }
    for (auto& c : fresh) {
      to_issue.push_back(c.get());
      calls_.push_back(std::move(c));
    }
    failed.replaced = true;
  }
  if (in_.metrics != nullptr) in_.metrics->RecordFailover(failed.worker, static_cast<int>(to_issue.size()));
  // The failed call's part becomes len(to_issue) parts; pending_ >= 1 until this one is done.
  pending_.fetch_add(static_cast<int>(to_issue.size()) - 1, std::memory_order_acq_rel);
  for (WorkerCall* c : to_issue) Issue(*c);
  return true;
}

grpc::Status DispatchCall::DescribeFailure(const WorkerCall& call) const {
  const std::string what = absl::StrCat(call.experts.size() == 1 ? "expert " : "experts ",
                                        absl::StrJoin(call.experts, ","), " of layer ", in_.layer,
                                        " on worker ", pool_->worker(call.worker).address);
  switch (call.status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat(what, " is unavailable: ", call.status.error_message()));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat(what, ": deadline exceeded"));
    default:
      return grpc::Status(call.status.error_code(),
                          absl::StrCat(what, " failed: ", call.status.error_message()));
  }
}

void DispatchCall::Complete() {
  grpc::Status status = early_status_;
  if (status.ok() && !local_status_.ok()) {
    status = grpc::Status(static_cast<grpc::StatusCode>(local_status_.code()),
                          absl::StrCat("router-local experts of layer ", in_.layer, ": ", local_status_.message()));
  }
  for (const auto& c : calls_) {
    if (!status.ok()) break;
    if (!c->replaced && !c->status.ok()) {
      status = DescribeFailure(*c);
      break;
    }
  }
  std::vector<float> out;
  if (status.ok()) status = Combine(out);
  if (!status.ok()) out.clear();
  Done done = std::move(done_);
  router::Routing routing = std::move(in_.routing);
  delete this;
  done(status, out, routing);
}

grpc::Status DispatchCall::Combine(std::vector<float>& out) {
  const router::DispatchPlan& plan = in_.plan;
  const int64_t n = plan.num_tokens(), h = in_.hidden;
  for (const auto& c : calls_) {
    if (c->replaced) continue;
    absl::StatusOr<model::Tensor> out = proto::ViewTensor(c->response.outputs(), "outputs");
    if (!out.ok() || out->dtype() != in_.wire_dtype || out->shape() != std::vector<int64_t>{c->rows, h}) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("worker ", pool_->worker(c->worker).address,
                                       " returned a malformed output (expected ",
                                       model::DTypeName(in_.wire_dtype), "[", c->rows, ", ", h, "])"));
    }
  }
  out.assign(static_cast<size_t>(n * h), 0.0f);
  std::vector<float> rows;
  const size_t elem = model::DTypeSize(in_.wire_dtype);
  for (int e = 0; e < plan.num_experts(); ++e) {
    if (call_of_expert_[e] == kLocal) {
      router::AccumulateRows(plan, plan.ExpertBegin(e), plan.RowsOf(e), local_out_.data() + offset_of_expert_[e] * h,
                             h, absl::MakeSpan(out));
      continue;
    }
    if (call_of_expert_[e] < 0 || each_token_once_) continue;
    const WorkerCall& c = *calls_[call_of_expert_[e]];
    const int64_t count = plan.RowsOf(e);
    rows.resize(static_cast<size_t>(count * h));
    const char* src = c.response.outputs().data().data() + offset_of_expert_[e] * h * elem;
    model::ConvertToF32(in_.wire_dtype, src, rows.data(), rows.size());
    router::AccumulateRows(plan, plan.ExpertBegin(e), count, rows.data(), h, absl::MakeSpan(out));
  }
  if (each_token_once_) {  // one weighted sum per token and worker, in call order
    for (const auto& c : calls_) {
      if (c->replaced) continue;
      rows.resize(static_cast<size_t>(c->rows * h));
      model::ConvertToF32(in_.wire_dtype, c->response.outputs().data().data(), rows.data(), rows.size());
      for (int64_t i = 0; i < c->rows; ++i) {
        float* dst = out.data() + static_cast<int64_t>(c->tokens[i]) * h;
        const float* sum = rows.data() + i * h;
        for (int64_t j = 0; j < h; ++j) dst[j] += sum[j];
      }
    }
  }
  router::AddIdentity(in_.routing, in_.x, h, absl::MakeSpan(out));
  return grpc::Status::OK;
}

}  // namespace moe::server
