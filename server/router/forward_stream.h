// server/router/forward_stream.h
// The reactor of one MoeService.ForwardStream: reads a ForwardRequest, runs it exactly as a
// unary Forward (MoeServiceImpl::ForwardAsync: validation, gating, batching with other callers,
// dispatch), writes its ForwardResponse, then reads the next — so answers come in order and one
// stream has one step in flight. A failed step finishes the stream with that step's status; the
// client's half-close finishes it OK once the last answer is written. Created by
// MoeServiceImpl::ForwardStream; deletes itself in OnDone. gRPC serialises its callbacks.
#pragma once

#include "moe/v1/moe.grpc.pb.h"

namespace moe::server {

class MoeServiceImpl;

class ForwardStreamReactor final : public grpc::ServerBidiReactor<moe::v1::ForwardRequest, moe::v1::ForwardResponse> {
 public:
  ForwardStreamReactor(MoeServiceImpl* service, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  MoeServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  moe::v1::ForwardRequest request_;
  moe::v1::ForwardResponse response_;
};

}  // namespace moe::server
