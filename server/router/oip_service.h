// server/router/oip_service.h
// The Open Inference Protocol (KServe v2, as Triton and tritonclient speak it) on the router's
// port: inference.GRPCInferenceService — ServerLive, ServerReady, ModelReady, ServerMetadata,
// ModelMetadata, ModelInfer — in front of MoeServiceImpl. Each layer L of the model is a model
// named "<model>-layer-<L>"; the bare "<model>" works too with an int64 or string request
// parameter "layer". ModelInfer takes one input "hidden_states" ([tokens, hidden], FP32 / BF16 /
// FP16, as raw_input_contents or FP32 contents) and answers "output" (same dtype and shape) and,
// when asked for (or when no output is named), "expert_ids" (INT32 [tokens, top_k], -1 padded)
// and "expert_weights" (FP32 [tokens, top_k]), all as raw_output_contents. Errors carry the same
// codes as MoeService (docs/API.md); with --auth_token_file, every call but ServerLive,
// ServerReady and ModelReady (probes) needs the bearer token. Thread-safe; owned by the router's main.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "inference/grpc_predict_v2.grpc.pb.h"
#include "server/router/moe_service.h"

namespace moe::server {

class OipService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // `moe` must outlive this service.
  explicit OipService(MoeServiceImpl* moe) : moe_(moe) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context, const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context, const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context, const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest*,
                                           inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context, const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override;

  // The layer a model name stands for: "<model>-layer-<L>" → L; "<model>" → `layer_parameter`
  // (-1 if the request named none: INVALID_ARGUMENT then); NOT_FOUND for other names.
  absl::StatusOr<int> LayerOf(const std::string& name, int64_t layer_parameter) const;

 private:
  MoeServiceImpl* const moe_;
};

}  // namespace moe::server
