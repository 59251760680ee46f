// server/router/moe_service.cc
#include "server/router/moe_service.h"

#include <algorithm>
#include <chrono>

#include "absl/container/fixed_array.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "model/finite_values.h"
#include "proto/status_convert.h"
#include "proto/tensor_codec.h"
#include "router/degraded.h"
#include "router/dispatch_plan.h"
#include "router/hidden_states_check.h"
#include "server/router/dispatch_call.h"
#include "server/router/forward_stream.h"
#include "server/common/server_runtime.h"

namespace moe::server {
std::string Shortened(absl::string_view text) {
  if (text.size() <= 64) return std::string(text);
  return absl::StrCat(text.substr(0, 64), "... (", text.size(), " bytes)");
}

std::unique_ptr<MoeServiceImpl> MoeServiceImpl::Local(MoeServiceOptions options,
                                                      std::shared_ptr<const router::MoeModel> model,
                                                      experts::ExpertBackend* backend,
                                                      ComputeQueue* queue) {
  std::unique_ptr<MoeServiceImpl> s(new MoeServiceImpl(std::move(options), std::move(model)));
  s->backend_ = backend;
  s->queue_ = queue;
  MoeServiceImpl* raw = s.get();
  s->MakeBatcher([raw](DispatchInput in, grpc::CallbackServerContext*, DispatchCall::Done done) {
    raw->RunLocal(std::move(in), std::move(done));
  });
  return s;
}

std::unique_ptr<MoeServiceImpl> MoeServiceImpl::Networked(MoeServiceOptions options,
                                                          std::shared_ptr<const router::MoeModel> model,
                                                          WorkerPool* workers, experts::ExpertBackend* local_backend,
                                                          ComputeQueue* queue) {
  std::unique_ptr<MoeServiceImpl> s(new MoeServiceImpl(std::move(options), std::move(model)));
  s->workers_ = workers;
  s->backend_ = local_backend;
  s->queue_ = queue;
  s->MakeBatcher([workers, micro = s->options_.micro_batching](DispatchInput in, grpc::CallbackServerContext* context,
                                                                DispatchCall::Done done) {
    StartMicroBatched(micro, std::move(in), context, std::move(done),
                      [workers](DispatchInput part, grpc::CallbackServerContext* context, DispatchCall::Done done) {
                        DispatchCall::Start(workers, std::move(part), context, std::move(done));
                      });
  });
  return s;
}

void MoeServiceImpl::MakeBatcher(ForwardBatcher::Start start) {
  batcher_ = std::make_unique<ForwardBatcher>(
      std::move(start), [this](DispatchInput& in) { FillCommon(in); },
      ForwardBatcherOptions{.max_in_flight = options_.max_batches_in_flight,
                            .max_tokens = options_.max_tokens,
                            .stall = options_.batch_stall});
}

absl::StatusOr<MoeServiceImpl::Validated> MoeServiceImpl::Validate(
    const moe::v1::ForwardRequest& request) const {
  if (!request.model().empty() && request.model() != options_.model_name) {
    return absl::NotFoundError(absl::StrCat("model '", Shortened(request.model()), "' not found; this router serves '",
                                            options_.model_name, "'"));
  }
  Validated v;
  ASSIGN_OR_RETURN(v.layer, model_->layer(request.layer()));
  if (!request.has_hidden_states()) {
    return absl::InvalidArgumentError("hidden_states is missing; expected a [tokens, hidden] tensor");
  }
  ASSIGN_OR_RETURN(model::Tensor hidden, proto::ViewTensor(request.hidden_states(), "hidden_states"));
  const int64_t h = model_->config().hidden_size;
  RETURN_IF_ERROR(router::CheckHiddenStatesShape(hidden, h, options_.max_tokens));
  v.dtype = hidden.dtype();
  v.tokens = hidden.dim(0);
  v.x.resize(static_cast<size_t>(hidden.num_elements()));
  model::ConvertToF32(hidden.dtype(), hidden.raw_data(), v.x.data(), v.x.size());
  RETURN_IF_ERROR(router::CheckFinite(v.x, h));
  return v;
}

grpc::ServerUnaryReactor* MoeServiceImpl::Forward(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  NoteCallArrived();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // What the generated handler would do (the same parser and serializer), but a parse failure is
  // the caller's INVALID_ARGUMENT.
  auto call = std::make_shared<std::pair<moe::v1::ForwardRequest, moe::v1::ForwardResponse>>();
  grpc::ByteBuffer bytes(*request);  // shares the slices; parsing consumes the copy
  const size_t size = request->Length();
  if (!grpc::GenericDeserialize<grpc::ProtoBufferReader, moe::v1::ForwardRequest>(&bytes, &call->first).ok()) {
    if (metrics_ != nullptr) {
      metrics_->RecordRequest(RpcMethod::kForward, grpc::StatusCode::INVALID_ARGUMENT, absl::ZeroDuration());
    }
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("the request (", size, " bytes) does not parse as moe.v1.ForwardRequest")));
    return reactor;
  }
  ForwardAsync(context, &call->first, &call->second, RpcMethod::kForward,
               [call, reactor, response](const grpc::Status& status) {
                 grpc::Status sent = status;
                 if (sent.ok()) {
                   bool own_buffer = false;
                   sent = grpc::GenericSerialize<grpc::ProtoBufferWriter, moe::v1::ForwardResponse>(
                       call->second, response, &own_buffer);
                 }
                 reactor->Finish(sent);
               });
  return reactor;
}

absl::Status MoeServiceImpl::Authorize(const grpc::CallbackServerContext* context, RpcMethod method) {
  if (auth_ == nullptr) return absl::OkStatus();
  absl::Status s = auth_->Check(*context);
  if (!s.ok() && metrics_ != nullptr) metrics_->RecordRequest(method, grpc::StatusCode::UNAUTHENTICATED, absl::ZeroDuration());
  return s;
}

grpc::ServerBidiReactor<moe::v1::ForwardRequest, moe::v1::ForwardResponse>* MoeServiceImpl::ForwardStream(
    grpc::CallbackServerContext* context) {
  return new ForwardStreamReactor(this, context);
}

bool MoeServiceImpl::CanServeEveryExpert() const {
  if (workers_ == nullptr) return true;
  const std::vector<int> replicas = workers_->AvailableReplicas(model_->config());
  return std::all_of(replicas.begin(), replicas.end(), [](int r) { return r > 0; });
}

void MoeServiceImpl::ForwardAsync(grpc::CallbackServerContext* context, const moe::v1::ForwardRequest* request,
                                  moe::v1::ForwardResponse* response, RpcMethod method, Finish done) {
  const absl::Time start = absl::Now();
  Finish finish = [this, method, start, done = std::move(done)](const grpc::Status& status) {
    if (metrics_ != nullptr) metrics_->RecordRequest(method, status.error_code(), absl::Now() - start);
    done(status);
  };
  if (auth_ != nullptr) {
    if (absl::Status s = auth_->Check(*context); !s.ok()) {
      finish(proto::ToGrpcStatus(s));
      return;
    }
  }
  // Admission: a bounded number of Forwards in flight; beyond it, refused now rather than queued.
  if (inflight_.fetch_add(1, std::memory_order_acq_rel) >= options_.max_inflight) {
    inflight_.fetch_sub(1, std::memory_order_acq_rel);
    finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("router overloaded: ", options_.max_inflight,
                                     " Forwards in flight (--max_inflight); retry with backoff")));
    return;
  }
  finish = [this, finish = std::move(finish)](const grpc::Status& status) {
    inflight_.fetch_sub(1, std::memory_order_acq_rel);
    finish(status);
  };
  absl::StatusOr<Validated> v = Validate(*request);
  if (!v.ok()) {
    finish(proto::ToGrpcStatus(v.status()));
    return;
  }
  const bool degraded_mode = options_.on_unavailable != OnUnavailable::kFail && workers_ != nullptr;
  GateAndDispatch(*std::move(v), context, request, response, std::move(finish), /*retry_once=*/degraded_mode);
}

void MoeServiceImpl::GateAndDispatch(Validated v, grpc::CallbackServerContext* context,
                                     const moe::v1::ForwardRequest* request, moe::v1::ForwardResponse* response,
                                     Finish finish, bool retry_once) {
  const absl::Time gate_start = absl::Now();
  const router::Gate& gate = v.layer->gate();
  absl::StatusOr<router::Routing> routing = gate.Route(v.x, v.tokens);
  if (metrics_ != nullptr) metrics_->RecordGating(absl::Now() - gate_start);
  if (!routing.ok()) {
    finish(proto::ToGrpcStatus(routing.status()));
    return;
  }
  std::shared_ptr<const std::vector<std::vector<int>>> affected;
  if (options_.on_unavailable != OnUnavailable::kFail && workers_ != nullptr && gate.spec().moe) {
    affected = Degrade(v, *routing);
  }
  if (metrics_ != nullptr) metrics_->RecordRouting(v.layer->layer(), *routing);
  if (load_ != nullptr) load_->Record(v.layer->layer(), *routing);
  if (retry_once) {
    // Degraded mode: a dispatch that fails UNAVAILABLE (a worker lost mid-call, now known down)
    // is gated once more, routing around what is down.
    auto saved = std::make_shared<Validated>(v);
    finish = [this, saved, context, request, response, finish = std::move(finish)](const grpc::Status& status) {
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
        finish(status);
        return;
      }
      GateAndDispatch(std::move(*saved), context, request, response, finish, /*retry_once=*/false);
    };
  }
  Dispatch(std::move(v), *std::move(routing), std::move(affected), context, request, response, std::move(finish));
}

std::shared_ptr<const std::vector<std::vector<int>>> MoeServiceImpl::Degrade(const Validated& v,
                                                                               router::Routing& routing) const {
  const int layer = v.layer->layer(), num_experts = v.layer->gate().num_experts();
  const std::vector<uint8_t> unavailable = workers_->UnavailableExperts(layer, num_experts);
  absl::FixedArray<bool> down(num_experts, false);
  for (int e = 0; e < num_experts; ++e) {
    down[e] = unavailable[e] != 0 && !(backend_ != nullptr && backend_->Hosts({layer, e}));
  }
  if (std::none_of(down.begin(), down.end(), [](bool d) { return d; })) return nullptr;
  auto choices = std::make_shared<std::vector<std::vector<int>>>(router::ExcludedChoices(routing, down));
  if (std::all_of(choices->begin(), choices->end(), [](const std::vector<int>& c) { return c.empty(); })) return nullptr;
  bool rerouted = false;
  if (options_.on_unavailable == OnUnavailable::kReroute) {
    absl::StatusOr<router::Routing> around = v.layer->gate().RouteExcluding(v.x, v.tokens, down);
    if (around.ok()) {
      routing = *std::move(around);
      rerouted = true;
    } else if (log_ != nullptr) {
      log_->Warn("degraded", absl::StrCat("cannot reroute around unavailable experts of layer ", layer, ": ",
                                          around.status().message(), "; their contribution is dropped"));
    }
  }
  if (!rerouted) router::DropExperts(down, routing);
  if (metrics_ != nullptr) {
    std::vector<int64_t> per_expert(num_experts, 0);
    for (const std::vector<int>& c : *choices) {
      for (int e : c) ++per_expert[e];
    }
    for (int e = 0; e < num_experts; ++e) {
      if (per_expert[e] > 0) metrics_->RecordDegraded(e, rerouted, per_expert[e]);
    }
  }
  return choices;
}

void MoeServiceImpl::RunLocal(DispatchInput in, DispatchCall::Done done) {
  DispatchCall::Done on_refusal = done;
  auto task = [this, in = std::move(in), done = std::move(done)]() {
    const router::MoeLayer* layer = *model_->layer(in.layer);  // validated before gating
    absl::StatusOr<std::vector<float>> out = layer->Run(in.x, in.routing.num_tokens, in.routing, *backend_);
    std::vector<float> result;
    if (out.ok()) result = *std::move(out);
    done(proto::ToGrpcStatus(out.status()), result, in.routing);
  };
  if (absl::Status s = queue_->Submit(std::move(task)); !s.ok()) {
    on_refusal(proto::ToGrpcStatus(s), {}, router::Routing());  // the routing went with the task
  }
}

void MoeServiceImpl::FillCommon(DispatchInput& in) const {
  in.hidden = model_->config().hidden_size;
  in.local_backend = backend_;
  in.local_queue = queue_;
  in.metrics = metrics_;
  in.config = &model_->config();
  in.log = log_;
  in.each_token_once = options_.each_token_once;
}

void MoeServiceImpl::Dispatch(Validated v, router::Routing routing,
                              std::shared_ptr<const std::vector<std::vector<int>>> affected,
                              grpc::CallbackServerContext* context,
                              const moe::v1::ForwardRequest* request, moe::v1::ForwardResponse* response,
                              Finish finish) {
  const int64_t tokens = v.tokens, hidden = model_->config().hidden_size;
  const model::DType dtype = v.dtype;
  // The caller's deadline, capped by our default; worker calls also inherit it by propagation.
  // A little before the caller's own: our DEADLINE_EXCEEDED, which names the worker and experts
  // that did not answer, then reaches the caller before its deadline expires on its side.
  const auto now = std::chrono::system_clock::now();
  auto deadline = now + std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.default_deadline));
  if (context->deadline() < deadline) {
    const auto remaining = context->deadline() - now;
    deadline = context->deadline() - std::clamp<std::chrono::system_clock::duration>(
                                         remaining / 20, std::chrono::milliseconds(1), std::chrono::milliseconds(50));
  }
  ForwardBatcher::Forward f{
      .layer = v.layer->layer(),
      .num_slots = v.layer->gate().num_slots(),
      .dtype = dtype,
      .tokens = tokens,
      .x = std::move(v.x),
      .routing = std::move(routing),
      .deadline = deadline,
      .context = context,
      .done = [request, response, finish = std::move(finish), tokens, hidden, dtype, affected = std::move(affected)](
                  const grpc::Status& status, absl::Span<const float> out, const router::Routing& routing) {
        grpc::Status checked = status;
        if (checked.ok()) {  // finite inputs can still overflow the experts' arithmetic (e.g. |x| = 1e20)
          checked = proto::ToGrpcStatus(model::CheckFiniteRows(
              out, hidden, "the layer's output", "token", absl::StatusCode::kOutOfRange,
              "the inputs overflow f32 arithmetic in the experts (scale hidden_states down)"));
        }
        if (checked.ok()) {
          proto::EncodeF32(out, {tokens, hidden}, dtype, response->mutable_output());
          if (request->return_routing()) AddRouting(routing, response);
          if (affected != nullptr) {  // degraded mode: say which tokens lost which experts
            response->set_degraded(true);
            for (int t = 0; t < response->routing_size() && t < static_cast<int>(affected->size()); ++t) {
              for (int e : (*affected)[t]) response->mutable_routing(t)->add_unavailable_experts(e);
            }
          }
        }
        finish(checked);
      }};
  if (absl::Status s = batcher_->Submit(f); !s.ok()) {
    f.done(proto::ToGrpcStatus(s), {}, f.routing);
  }
}

namespace {

void DescribeSpec(const router::RoutingSpec& spec, moe::v1::RoutingSpec* r) {
  r->set_scoring(std::string(spec.ScoringName()));
  r->set_num_experts(spec.num_experts);
  r->set_top_k(spec.top_k);
  r->set_norm_topk_prob(spec.norm_topk_prob);
  r->set_routed_scaling_factor(spec.routed_scaling_factor);
  r->set_description(spec.DebugString());
  r->set_selection_bias(spec.selection_bias);
  r->set_n_group(spec.n_group);
  r->set_topk_group(spec.topk_group);
  r->set_group_score(spec.group_score == router::RoutingSpec::GroupScore::kMax       ? "max"
                     : spec.group_score == router::RoutingSpec::GroupScore::kTop2Sum ? "top2_sum"
                                                                                     : "");
  r->set_policy(std::string(spec.PolicyName()));
  r->set_capacity_factor(spec.capacity_factor);
  r->set_overflow(spec.overflow == router::RoutingSpec::Overflow::kDrop ? "drop" : "reroute");
  r->set_noise_std(spec.noise_std);
}

}  // namespace

void DescribeModel(const router::MoeModel& model, moe::v1::GetModelInfoResponse* info) {
  const model::ModelConfig& c = model.config();
  info->set_model_type(c.model_type);
  info->set_num_layers(model.num_layers());
  info->set_hidden_size(c.hidden_size);
  info->set_intermediate_size(c.moe_intermediate_size);
  info->set_num_experts(c.num_experts);
  info->set_top_k(c.top_k);
  info->set_total_parameters(c.TotalParameters());
  info->set_active_parameters(c.ActiveParameters());
  bool first_moe = true;
  for (int l = 0; l < model.num_layers(); ++l) {
    const router::RoutingSpec& spec = (*model.layer(l))->gate().spec();
    moe::v1::LayerInfo* layer = info->add_layers();
    layer->set_layer(l);
    layer->set_moe(spec.moe);
    if (spec.moe) DescribeSpec(spec, layer->mutable_routing());
    layer->set_always_on_intermediate_size(c.AlwaysOnIntermediate(l));
    layer->set_shared_gate(spec.shared_gate);
    if (spec.moe && first_moe) {
      DescribeSpec(spec, info->mutable_routing());
      info->set_top_k(spec.top_k);
      first_moe = false;
    }
  }
}

grpc::ServerUnaryReactor* MoeServiceImpl::GetModelInfo(grpc::CallbackServerContext* context,
                                                       const moe::v1::GetModelInfoRequest* request,
                                                       moe::v1::GetModelInfoResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  auto finish = [&](const grpc::Status& status) {
    if (metrics_ != nullptr) metrics_->RecordRequest(RpcMethod::kGetModelInfo, status.error_code(), absl::Now() - start);
    reactor->Finish(status);
  };
  if (auth_ != nullptr) {
    if (absl::Status s = auth_->Check(*context); !s.ok()) {
      finish(proto::ToGrpcStatus(s));
      return reactor;
    }
  }
  if (!request->model().empty() && request->model() != options_.model_name) {
    finish(grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("model '", Shortened(request->model()), "' not found")));
    return reactor;
  }
  response->set_model(options_.model_name);
  DescribeModel(*model_, response);
  response->set_max_tokens(options_.max_tokens);
  response->set_local(workers_ == nullptr);
  const model::ModelConfig& config = model_->config();
  int first_moe_layer = 0;
  while (first_moe_layer < config.num_layers && !config.IsMoeLayer(first_moe_layer)) ++first_moe_layer;
  auto placed = [&](experts::ExpertKey key, google::protobuf::RepeatedPtrField<std::string>* out) {
    if (backend_ != nullptr && backend_->Hosts(key)) out->Add("router");
    if (workers_ == nullptr) return;
    for (int w : workers_->ReplicasOf(key)) out->Add(std::string(workers_->worker(w).address));
  };
  for (int e = 0; e < config.num_experts; ++e) {
    moe::v1::ExpertPlacement* p = response->add_placement();
    p->set_expert(e);
    placed({first_moe_layer, e}, p->mutable_workers());
  }
  for (moe::v1::LayerInfo& layer : *response->mutable_layers()) {
    if (layer.always_on_intermediate_size() > 0) {
      placed({layer.layer(), config.AlwaysOnId()}, layer.mutable_always_on_placement());
    }
  }
  if (workers_ != nullptr) {
    for (int w = 0; w < workers_->size(); ++w) {
      if (workers_->IsRemoved(w)) continue;
      const moe::v1::GetWorkerInfoResponse info = workers_->Info(w);
      moe::v1::WorkerState* s = response->add_workers();
      s->set_address(workers_->worker(w).address);
      s->set_up(workers_->IsUp(w));
      s->set_backend(info.backend());
      s->set_device(info.device());
      s->set_num_experts(info.experts_size());
    }
  }
  finish(grpc::Status::OK);
  return reactor;
}

}  // namespace moe::server
