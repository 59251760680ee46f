// server/moe_service.cc
#include "server/moe_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "experts/status_macros.h"
#include "proto/status_convert.h"
#include "proto/tensor_codec.h"
#include "router/dispatch_plan.h"
#include "router/hidden_states_check.h"
#include "server/dispatch_call.h"

namespace moe::server {

std::unique_ptr<MoeServiceImpl> MoeServiceImpl::Local(MoeServiceOptions options,
                                                      std::shared_ptr<const router::MoeModel> model,
                                                      experts::ExpertBackend* backend,
                                                      ComputeQueue* queue) {
  std::unique_ptr<MoeServiceImpl> s(new MoeServiceImpl(std::move(options), std::move(model)));
  s->backend_ = backend;
  s->queue_ = queue;
  return s;
}

std::unique_ptr<MoeServiceImpl> MoeServiceImpl::Networked(MoeServiceOptions options,
                                                          std::shared_ptr<const router::MoeModel> model,
                                                          WorkerPool* workers) {
  std::unique_ptr<MoeServiceImpl> s(new MoeServiceImpl(std::move(options), std::move(model)));
  s->workers_ = workers;
  return s;
}

absl::StatusOr<MoeServiceImpl::Validated> MoeServiceImpl::Validate(
    const moe::v1::ForwardRequest& request) const {
  if (!request.model().empty() && request.model() != options_.model_name) {
    return absl::NotFoundError(absl::StrCat("model '", request.model(), "' not found; this router serves '",
                                            options_.model_name, "'"));
  }
  Validated v;
  ASSIGN_OR_RETURN(v.layer, model_->layer(request.layer()));
  if (!request.has_hidden_states()) {
    return absl::InvalidArgumentError("hidden_states is missing; expected a [tokens, hidden] tensor");
  }
  ASSIGN_OR_RETURN(experts::Tensor hidden, proto::ViewTensor(request.hidden_states(), "hidden_states"));
  const int64_t h = model_->config().hidden_size;
  RETURN_IF_ERROR(router::CheckHiddenStatesShape(hidden, h, options_.max_tokens));
  v.dtype = hidden.dtype();
  v.tokens = hidden.dim(0);
  v.x.resize(static_cast<size_t>(hidden.num_elements()));
  experts::ConvertToF32(hidden.dtype(), hidden.raw_data(), v.x.data(), v.x.size());
  RETURN_IF_ERROR(router::CheckFinite(v.x, h));
  return v;
}

grpc::ServerUnaryReactor* MoeServiceImpl::Forward(grpc::CallbackServerContext* context,
                                                  const moe::v1::ForwardRequest* request,
                                                  moe::v1::ForwardResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Validated> v = Validate(*request);
  if (!v.ok()) {
    reactor->Finish(proto::ToGrpcStatus(v.status()));
  } else if (workers_ != nullptr) {
    ForwardNetworked(*std::move(v), context, request, response, reactor);
  } else {
    ForwardLocal(*std::move(v), request, response, reactor);
  }
  return reactor;
}

void MoeServiceImpl::ForwardLocal(Validated v, const moe::v1::ForwardRequest* request,
                                  moe::v1::ForwardResponse* response,
                                  grpc::ServerUnaryReactor* reactor) {
  auto task = [this, v = std::move(v), request, response, reactor]() {
    router::Routing routing;
    absl::StatusOr<std::vector<float>> out = v.layer->Forward(v.x, v.tokens, *backend_, &routing);
    if (!out.ok()) {
      reactor->Finish(proto::ToGrpcStatus(out.status()));
      return;
    }
    proto::EncodeF32(*out, {v.tokens, model_->config().hidden_size}, v.dtype, response->mutable_output());
    if (request->return_routing()) {
      for (int64_t t = 0; t < v.tokens; ++t) {
        moe::v1::TokenRouting* r = response->add_routing();
        for (int32_t e : routing.ExpertsOf(t)) r->add_experts(e);
        for (float w : routing.WeightsOf(t)) r->add_weights(w);
      }
    }
    reactor->Finish(grpc::Status::OK);
  };
  if (absl::Status s = queue_->Submit(std::move(task)); !s.ok()) reactor->Finish(proto::ToGrpcStatus(s));
}

void MoeServiceImpl::ForwardNetworked(Validated v, grpc::CallbackServerContext* context,
                                      const moe::v1::ForwardRequest* request,
                                      moe::v1::ForwardResponse* response,
                                      grpc::ServerUnaryReactor* reactor) {
  absl::StatusOr<router::Routing> routing = v.layer->gate().Route(v.x, v.tokens);
  if (!routing.ok()) {
    reactor->Finish(proto::ToGrpcStatus(routing.status()));
    return;
  }
  absl::StatusOr<router::DispatchPlan> plan =
      router::DispatchPlan::Build(*routing, v.layer->gate().num_experts());
  if (!plan.ok()) {
    reactor->Finish(proto::ToGrpcStatus(plan.status()));
    return;
  }
  DispatchInput in;
  in.layer = v.layer->layer();
  in.hidden = model_->config().hidden_size;
  in.x = std::move(v.x);
  in.wire_dtype = v.dtype;
  in.routing = *std::move(routing);
  in.plan = *std::move(plan);
  in.return_routing = request->return_routing();
  // The caller's deadline, capped by our default; worker calls also inherit it by propagation.
  in.deadline = std::min(context->deadline(),
                         std::chrono::system_clock::now() +
                             std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.default_deadline)));
  DispatchCall::Start(workers_, std::move(in), context, response, reactor);
}

void DescribeModel(const router::MoeModel& model, moe::v1::GetModelInfoResponse* info) {
  const experts::ModelConfig& c = model.config();
  info->set_model_type(c.model_type);
  info->set_num_layers(model.num_layers());
  info->set_hidden_size(c.hidden_size);
  info->set_intermediate_size(c.intermediate_size);
  info->set_num_experts(c.num_experts);
  info->set_top_k(c.top_k);
  const int64_t h = c.hidden_size, i = c.intermediate_size, e = c.num_experts, l = model.num_layers();
  info->set_total_parameters(l * (e * h + e * 3 * h * i));
  info->set_active_parameters(l * (e * h + c.top_k * 3 * h * i));
  if (model.num_layers() > 0) {
    const router::RoutingSpec& spec = (*model.layer(0))->gate().spec();
    moe::v1::RoutingSpec* r = info->mutable_routing();
    r->set_scoring("softmax");
    r->set_num_experts(spec.num_experts);
    r->set_top_k(spec.top_k);
    r->set_norm_topk_prob(spec.norm_topk_prob);
    r->set_routed_scaling_factor(spec.routed_scaling_factor);
    r->set_description(spec.DebugString());
  }
}

grpc::ServerUnaryReactor* MoeServiceImpl::GetModelInfo(grpc::CallbackServerContext* context,
                                                       const moe::v1::GetModelInfoRequest* request,
                                                       moe::v1::GetModelInfoResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!request->model().empty() && request->model() != options_.model_name) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 absl::StrCat("model '", request->model(), "' not found")));
    return reactor;
  }
  response->set_model(options_.model_name);
  DescribeModel(*model_, response);
  response->set_max_tokens(options_.max_tokens);
  response->set_local(workers_ == nullptr);
  const int num_experts = model_->config().num_experts;
  for (int e = 0; e < num_experts; ++e) {
    moe::v1::ExpertPlacement* p = response->add_placement();
    p->set_expert(e);
    if (workers_ == nullptr) {
      p->add_workers("local");
      continue;
    }
    for (int w : workers_->ReplicasOf({0, e})) p->add_workers(workers_->worker(w).address);
  }
  if (workers_ != nullptr) {
    for (int w = 0; w < workers_->size(); ++w) {
      const WorkerPool::Worker& worker = workers_->worker(w);
      moe::v1::WorkerState* s = response->add_workers();
      s->set_address(worker.address);
      s->set_up(workers_->IsConnectable(w));
      s->set_backend(worker.info.backend());
      s->set_device(worker.info.device());
      s->set_num_experts(worker.info.experts_size());
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace moe::server
