// client/moe_client.cc
#include "client/moe_client.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"

#include <chrono>

#include "absl/synchronization/notification.h"
#include "base/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "proto/channel.h"
#include "proto/status_convert.h"
#include "proto/tensor_codec.h"

namespace moe::client {
namespace {

std::chrono::system_clock::time_point DeadlineFromNow(absl::Duration d) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// State of one async Forward; deleted in its callback.
struct AsyncForward {
  grpc::ClientContext context;
  moe::v1::ForwardRequest request;
  moe::v1::ForwardResponse response;
  absl::Time start;
  std::function<void(absl::StatusOr<ForwardResult>)> done;
};

}  // namespace

std::unique_ptr<MoeClient> MoeClient::Connect(const std::string& address, Options options) {
  std::unique_ptr<MoeClient> c(new MoeClient());
  c->address_ = address;
  c->options_ = options;
  c->channel_ = proto::MakeChannel(address, options.max_message_bytes, {}, options.credentials);
  c->stub_ = moe::v1::MoeService::NewStub(c->channel_);
  return c;
}

absl::Status AddSecurity(const proto::TlsFiles& tls, const std::string& token_file, MoeClient::Options* options) {
  if (tls.enabled()) {
    ASSIGN_OR_RETURN(options->credentials, proto::ChannelTls(tls));
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    std::stringstream text;
    text << in.rdbuf();
    options->token = std::string(absl::StripAsciiWhitespace(text.str()));
    if (!in.good() && !in.eof()) return absl::InvalidArgumentError("--auth_token_file: cannot read '" + token_file + "'");
    if (options->token.empty()) return absl::InvalidArgumentError("--auth_token_file: '" + token_file + "' holds no token");
  }
  return absl::OkStatus();
}

void MoeClient::Prepare(grpc::ClientContext& context) const {
  context.set_deadline(DeadlineFromNow(options_.deadline));
  if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
}

absl::StatusOr<ForwardResult> ParseForwardResponse(const moe::v1::ForwardResponse& response) {
  absl::StatusOr<model::Tensor> view = proto::ViewTensor(response.output(), "output");
  if (!view.ok()) return absl::InternalError(std::string(view.status().message()));
  ForwardResult result;
  result.output = view->Clone();
  for (const moe::v1::TokenRouting& r : response.routing()) {
    result.experts.emplace_back(r.experts().begin(), r.experts().end());
    result.weights.emplace_back(r.weights().begin(), r.weights().end());
    result.always_on_weights.push_back(r.always_on_weight());
  }
  return result;
}

void MoeClient::ForwardAsync(int64_t layer, const model::Tensor& hidden_states, bool return_routing,
                             std::function<void(absl::StatusOr<ForwardResult>)> done) {
  auto* call = new AsyncForward();
  call->request.set_layer(layer);
  call->request.set_return_routing(return_routing);
  proto::EncodeTensor(hidden_states, call->request.mutable_hidden_states());
  Prepare(call->context);
  call->done = std::move(done);
  call->start = absl::Now();
  stub_->async()->Forward(&call->context, &call->request, &call->response, [call](grpc::Status s) {
    const absl::Duration latency = absl::Now() - call->start;
    absl::StatusOr<ForwardResult> result =
        s.ok() ? ParseForwardResponse(call->response) : absl::StatusOr<ForwardResult>(proto::FromGrpcStatus(s));
    if (result.ok()) result->latency = latency;
    auto done = std::move(call->done);
    delete call;
    done(std::move(result));
  });
}

absl::StatusOr<ForwardResult> MoeClient::Forward(int64_t layer, const model::Tensor& hidden_states,
                                                 bool return_routing) {
  absl::Notification finished;
  absl::StatusOr<ForwardResult> result;
  ForwardAsync(layer, hidden_states, return_routing, [&](absl::StatusOr<ForwardResult> r) {
    result = std::move(r);
    finished.Notify();
  });
  finished.WaitForNotification();
  return result;
}

absl::Status MoeClient::ForwardRaw(const moe::v1::ForwardRequest& request,
                                   moe::v1::ForwardResponse* response) {
  grpc::ClientContext context;
  Prepare(context);
  return proto::FromGrpcStatus(stub_->Forward(&context, request, response));
}

std::unique_ptr<ForwardStream> MoeClient::OpenStream() {
  std::unique_ptr<ForwardStream> s(new ForwardStream());
  Prepare(s->context_);
  s->stream_ = stub_->ForwardStream(&s->context_);
  return s;
}

absl::StatusOr<ForwardResult> ForwardStream::Forward(int64_t layer, const model::Tensor& hidden_states,
                                                     bool return_routing) {
  if (!failed_.ok()) return failed_;
  if (closed_) return absl::FailedPreconditionError("the stream is closed");
  moe::v1::ForwardRequest request;
  request.set_layer(layer);
  request.set_return_routing(return_routing);
  proto::EncodeTensor(hidden_states, request.mutable_hidden_states());
  const absl::Time start = absl::Now();
  moe::v1::ForwardResponse response;
  if (!stream_->Write(request) || !stream_->Read(&response)) {
    closed_ = true;
    failed_ = proto::FromGrpcStatus(stream_->Finish());
    if (failed_.ok()) failed_ = absl::UnavailableError("the stream ended without an answer");
    return failed_;
  }
  absl::StatusOr<ForwardResult> result = ParseForwardResponse(response);
  if (result.ok()) result->latency = absl::Now() - start;
  return result;
}

absl::Status ForwardStream::Close() {
  if (closed_) return failed_;
  closed_ = true;
  stream_->WritesDone();
  failed_ = proto::FromGrpcStatus(stream_->Finish());
  return failed_;
}

ForwardStream::~ForwardStream() {
  if (!closed_) {
    context_.TryCancel();
    (void)stream_->Finish();
  }
}

absl::StatusOr<moe::v1::GetModelInfoResponse> MoeClient::GetModelInfo() {
  grpc::ClientContext context;
  Prepare(context);
  moe::v1::GetModelInfoResponse info;
  RETURN_IF_ERROR(proto::FromGrpcStatus(stub_->GetModelInfo(&context, moe::v1::GetModelInfoRequest(), &info)));
  return info;
}

absl::StatusOr<bool> MoeClient::IsServing(const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  Prepare(context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  RETURN_IF_ERROR(proto::FromGrpcStatus(health->Check(&context, request, &response)));
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

}  // namespace moe::client
