// server/router/oip_service.cc
#include "server/router/oip_service.h"

#include <cstring>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/status_convert.h"
#include "server/common/build_info.h"
#include "server/common/server_runtime.h"

namespace moe::server {
namespace {

constexpr char kInput[] = "hidden_states";
constexpr char kOutput[] = "output";
constexpr char kExpertIds[] = "expert_ids";
constexpr char kExpertWeights[] = "expert_weights";
constexpr char kVersion[] = "1";

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(proto::ToGrpcStatus(status));
  return reactor;
}

absl::StatusOr<moe::v1::DType> WireDType(const std::string& datatype) {
  if (datatype == "FP32") return moe::v1::DTYPE_F32;
  if (datatype == "BF16") return moe::v1::DTYPE_BF16;
  if (datatype == "FP16") return moe::v1::DTYPE_F16;
  return absl::InvalidArgumentError(absl::StrCat("input ", kInput, " has datatype ", Shortened(datatype),
                                                 "; expected FP32, BF16 or FP16"));
}

// The request's "layer" parameter: -1 if absent.
absl::StatusOr<int64_t> LayerParameter(const inference::ModelInferRequest& request) {
  auto it = request.parameters().find("layer");
  if (it == request.parameters().end()) return -1;
  const inference::InferParameter& p = it->second;
  int64_t layer = -1;
  if (p.has_int64_param()) return p.int64_param();
  if (p.has_uint64_param()) return static_cast<int64_t>(p.uint64_param());
  if (p.has_string_param() && absl::SimpleAtoi(p.string_param(), &layer) && layer >= 0) return layer;
  return absl::InvalidArgumentError("parameter 'layer' must be a non-negative integer (int64 or string)");
}

void AddTensorMetadata(const std::string& name, const std::string& datatype, std::vector<int64_t> shape,
                       google::protobuf::RepeatedPtrField<inference::ModelMetadataResponse::TensorMetadata>* out) {
  inference::ModelMetadataResponse::TensorMetadata* t = out->Add();
  t->set_name(name);
  t->set_datatype(datatype);
  for (int64_t d : shape) t->add_shape(d);
}

// The routing of `answer` as [tokens, k] experts (-1 padded) and weights, k the most experts of a token.
void AddRoutingOutputs(const moe::v1::ForwardResponse& answer, bool ids, bool weights,
                       inference::ModelInferResponse* response) {
  const int64_t tokens = answer.routing_size();
  int64_t k = 0;
  for (const moe::v1::TokenRouting& r : answer.routing()) k = std::max<int64_t>(k, r.experts_size());
  std::vector<int32_t> expert_ids(static_cast<size_t>(tokens * k), -1);
  std::vector<float> expert_weights(static_cast<size_t>(tokens * k), 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    const moe::v1::TokenRouting& r = answer.routing(static_cast<int>(t));
    for (int j = 0; j < r.experts_size(); ++j) {
      expert_ids[t * k + j] = r.experts(j);
      expert_weights[t * k + j] = r.weights(j);
    }
  }
  auto add = [&](const char* name, const char* datatype, const void* data, size_t bytes) {
    inference::ModelInferResponse::InferOutputTensor* o = response->add_outputs();
    o->set_name(name);
    o->set_datatype(datatype);
    o->add_shape(tokens);
    o->add_shape(k);
    response->add_raw_output_contents()->assign(static_cast<const char*>(data), bytes);
  };
  if (ids) add(kExpertIds, "INT32", expert_ids.data(), expert_ids.size() * sizeof(int32_t));
  if (weights) add(kExpertWeights, "FP32", expert_weights.data(), expert_weights.size() * sizeof(float));
}

}  // namespace

absl::StatusOr<int> OipService::LayerOf(const std::string& name, int64_t layer_parameter) const {
  const std::string& model = moe_->model_name();
  const int layers = moe_->model().num_layers();
  int64_t layer = -1;
  if (name == model) {
    if (layer_parameter < 0) {
      return absl::InvalidArgumentError(absl::StrCat("model '", model, "' needs a 'layer' parameter; or call the model '",
                                                     model, "-layer-<L>' (L in 0..", layers - 1, ")"));
    }
    layer = layer_parameter;
  } else if (const std::string prefix = model + "-layer-"; absl::StartsWith(name, prefix)) {
    if (!absl::SimpleAtoi(absl::string_view(name).substr(prefix.size()), &layer)) layer = -1;
  }
  if (layer < 0 || layer >= layers) {
    return absl::NotFoundError(absl::StrCat("model '", Shortened(name), "' not found; this router serves '", model,
                                            "-layer-<L>' for L in 0..", layers - 1, " (or '", model,
                                            "' with a 'layer' parameter)"));
  }
  return static_cast<int>(layer);
}

grpc::ServerUnaryReactor* OipService::ServerLive(grpc::CallbackServerContext* context,
                                                 const inference::ServerLiveRequest*,
                                                 inference::ServerLiveResponse* response) {
  response->set_live(true);
  return Answer(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ServerReady(grpc::CallbackServerContext* context,
                                                  const inference::ServerReadyRequest*,
                                                  inference::ServerReadyResponse* response) {
  response->set_ready(moe_->CanServeEveryExpert());
  return Answer(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelReady(grpc::CallbackServerContext* context,
                                                 const inference::ModelReadyRequest* request,
                                                 inference::ModelReadyResponse* response) {
  // The bare model name is ready too (it needs a layer parameter only to infer).
  const bool known = request->name() == moe_->model_name() || LayerOf(request->name(), 0).ok();
  response->set_ready(known && moe_->CanServeEveryExpert());
  return Answer(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ServerMetadata(grpc::CallbackServerContext* context,
                                                     const inference::ServerMetadataRequest*,
                                                     inference::ServerMetadataResponse* response) {
  if (absl::Status s = moe_->Authorize(context, RpcMethod::kGetModelInfo); !s.ok()) return Answer(context, s);
  response->set_name("moe-serve");
  response->set_version(BuildVersion());
  return Answer(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelMetadata(grpc::CallbackServerContext* context,
                                                    const inference::ModelMetadataRequest* request,
                                                    inference::ModelMetadataResponse* response) {
  if (absl::Status s = moe_->Authorize(context, RpcMethod::kGetModelInfo); !s.ok()) return Answer(context, s);
  const bool bare = request->name() == moe_->model_name();
  absl::StatusOr<int> layer = LayerOf(request->name(), bare ? 0 : -1);
  if (!layer.ok()) return Answer(context, layer.status());
  const int64_t hidden = moe_->model().config().hidden_size;
  const int top_k = bare ? moe_->model().config().top_k : (*moe_->model().layer(*layer))->gate().spec().top_k;
  response->set_name(request->name());
  response->add_versions(kVersion);
  response->set_platform("moe-serve");
  AddTensorMetadata(kInput, "FP32", {-1, hidden}, response->mutable_inputs());  // or BF16 / FP16
  AddTensorMetadata(kOutput, "FP32", {-1, hidden}, response->mutable_outputs());  // the input's datatype
  AddTensorMetadata(kExpertIds, "INT32", {-1, top_k}, response->mutable_outputs());
  AddTensorMetadata(kExpertWeights, "FP32", {-1, top_k}, response->mutable_outputs());
  return Answer(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OipService::ModelInfer(grpc::CallbackServerContext* context,
                                                 const inference::ModelInferRequest* request,
                                                 inference::ModelInferResponse* response) {
  NoteCallArrived();
  absl::StatusOr<int64_t> parameter = LayerParameter(*request);
  if (!parameter.ok()) return Answer(context, parameter.status());
  absl::StatusOr<int> layer = LayerOf(request->model_name(), *parameter);
  if (!layer.ok()) return Answer(context, layer.status());
  if (request->inputs_size() != 1 || request->inputs(0).name() != kInput) {
    std::vector<std::string> names;
    for (const auto& in : request->inputs()) names.push_back(Shortened(in.name()));
    return Answer(context, absl::InvalidArgumentError(absl::StrCat(
                               "expected one input named '", kInput, "' ([tokens, hidden]); got ", names.size(),
                               names.empty() ? "" : ": ", absl::StrJoin(names, ", "))));
  }
  const inference::ModelInferRequest::InferInputTensor& input = request->inputs(0);
  absl::StatusOr<moe::v1::DType> dtype = WireDType(input.datatype());
  if (!dtype.ok()) return Answer(context, dtype.status());
  bool want_output = request->outputs().empty(), want_ids = want_output, want_weights = want_output;
  for (const auto& o : request->outputs()) {
    if (o.name() == kOutput) {
      want_output = true;
    } else if (o.name() == kExpertIds) {
      want_ids = true;
    } else if (o.name() == kExpertWeights) {
      want_weights = true;
    } else {
      return Answer(context, absl::InvalidArgumentError(absl::StrCat("unknown output '", Shortened(o.name()),
                                                                     "'; outputs: output, expert_ids, expert_weights")));
    }
  }
  auto call = std::make_shared<std::pair<moe::v1::ForwardRequest, moe::v1::ForwardResponse>>();
  moe::v1::ForwardRequest& forward = call->first;
  forward.set_layer(*layer);
  forward.set_return_routing(want_ids || want_weights);
  moe::v1::Tensor* hidden = forward.mutable_hidden_states();
  hidden->set_dtype(*dtype);
  for (int64_t d : input.shape()) hidden->add_shape(d);
  const bool typed = input.has_contents() && input.contents().fp32_contents_size() > 0;
  if (request->raw_input_contents_size() > 1 || (request->raw_input_contents_size() == 1 && typed)) {
    return Answer(context, absl::InvalidArgumentError(
                               "give hidden_states either as one raw_input_contents entry or as contents, not both"));
  }
  if (request->raw_input_contents_size() == 1) {
    *hidden->mutable_data() = request->raw_input_contents(0);
  } else if (typed && *dtype == moe::v1::DTYPE_F32) {
    const auto& values = input.contents().fp32_contents();
    hidden->mutable_data()->resize(static_cast<size_t>(values.size()) * sizeof(float));
    std::memcpy(hidden->mutable_data()->data(), values.data(), hidden->data().size());
  } else {
    return Answer(context, absl::InvalidArgumentError(absl::StrCat(
                               "hidden_states has no data: send raw_input_contents (any datatype) or fp32_contents (FP32)")));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  moe_->ForwardAsync(
      context, &call->first, &call->second, RpcMethod::kModelInfer,
      [call, reactor, request, response, want_output, want_ids, want_weights](const grpc::Status& status) {
        if (status.ok()) {
          response->set_model_name(request->model_name());
          response->set_model_version(kVersion);
          response->set_id(request->id());
          moe::v1::ForwardResponse& answer = call->second;
          if (want_output) {
            inference::ModelInferResponse::InferOutputTensor* o = response->add_outputs();
            o->set_name(kOutput);
            o->set_datatype(request->inputs(0).datatype());
            for (int64_t d : answer.output().shape()) o->add_shape(d);
            response->add_raw_output_contents()->swap(*answer.mutable_output()->mutable_data());
          }
          AddRoutingOutputs(answer, want_ids, want_weights, response);
        }
        reactor->Finish(status);
      });
  return reactor;
}

}  // namespace moe::server
