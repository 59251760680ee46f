// server/router/forward_stream.cc
#include "server/router/forward_stream.h"

#include "server/common/server_runtime.h"
#include "server/router/moe_service.h"

namespace moe::server {

ForwardStreamReactor::ForwardStreamReactor(MoeServiceImpl* service, grpc::CallbackServerContext* context)
    : service_(service), context_(context) {
  StartRead(&request_);
}

void ForwardStreamReactor::OnReadDone(bool ok) {
  if (ok) NoteCallArrived();  // each request of a stream counts as a call for the drain
  if (!ok) {  // the client half-closed (or went away): every answer so far is written
    Finish(grpc::Status::OK);
    return;
  }
  response_.Clear();
  service_->ForwardAsync(context_, &request_, &response_, RpcMethod::kForwardStream, [this](const grpc::Status& status) {
    if (!status.ok()) {
      Finish(status);
      return;
    }
    StartWrite(&response_);
  });
}

void ForwardStreamReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed while an answer was being written"));
    return;
  }
  StartRead(&request_);
}

}  // namespace moe::server
