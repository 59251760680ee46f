// client/moe_client.h
// The C++ client library of moe-serve: one channel to a router; Forward (blocking or with a
// callback), GetModelInfo and a health check. Statuses come back as absl::Status with the
// server's code. Thread-safe: share one MoeClient between threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "model/tensor.h"
#include "moe/v1/moe.grpc.pb.h"
#include "proto/tls_credentials.h"

namespace moe::client {

struct ForwardResult {
  model::Tensor output;                    // [tokens, hidden], the dtype sent
  std::vector<std::vector<int>> experts;     // per token, when routing was asked for
  std::vector<std::vector<float>> weights;   // per token, when routing was asked for
  std::vector<float> always_on_weights;      // per token: weight of the shared/dense MLP
  absl::Duration latency;                    // round trip seen by the client
};

// One MoeService.ForwardStream: Forwards sent one after another on a single stream, each answer
// read before the next request goes. The stream's deadline is the client's deadline, counted
// from OpenStream. Not thread-safe: one caller at a time.
class ForwardStream {
 public:
  // The next step; a failure ends the stream (later calls return it again).
  absl::StatusOr<ForwardResult> Forward(int64_t layer, const model::Tensor& hidden_states,
                                        bool return_routing = false);
  // Half-closes and returns the stream's final status.
  absl::Status Close();
  ~ForwardStream();

 private:
  friend class MoeClient;
  ForwardStream() = default;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<moe::v1::ForwardRequest, moe::v1::ForwardResponse>> stream_;
  absl::Status failed_;
  bool closed_ = false;
};

class MoeClient {
 public:
  struct Options {
    int64_t max_message_bytes = 256 << 20;
    absl::Duration deadline = absl::Seconds(60);
    std::shared_ptr<grpc::ChannelCredentials> credentials;  // null: plaintext (proto::ChannelTls for TLS)
    std::string token;  // non-empty: sent as "authorization: Bearer <token>" on every call
  };
  static std::unique_ptr<MoeClient> Connect(const std::string& address, Options options);
  static std::unique_ptr<MoeClient> Connect(const std::string& address) { return Connect(address, Options()); }

  // Runs `hidden_states` through MoE layer `layer`. The server's status on failure
  // (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...).
  absl::StatusOr<ForwardResult> Forward(int64_t layer, const model::Tensor& hidden_states,
                                        bool return_routing = false);
  // The same without blocking: `done` runs on a gRPC thread.
  void ForwardAsync(int64_t layer, const model::Tensor& hidden_states, bool return_routing,
                    std::function<void(absl::StatusOr<ForwardResult>)> done);
  // Sends `request` exactly as given (for callers that build requests themselves, and tests).
  absl::Status ForwardRaw(const moe::v1::ForwardRequest& request, moe::v1::ForwardResponse* response);

  absl::StatusOr<moe::v1::GetModelInfoResponse> GetModelInfo();
  // Opens a ForwardStream (with this client's deadline and token).
  std::unique_ptr<ForwardStream> OpenStream();
  // grpc.health.v1 Check of `service` ("" = the whole server): true when SERVING.
  absl::StatusOr<bool> IsServing(const std::string& service = "");

  const std::string& address() const { return address_; }

 private:
  MoeClient() = default;
  // Deadline and token of every call.
  void Prepare(grpc::ClientContext& context) const;
  std::string address_;
  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<moe::v1::MoeService::Stub> stub_;
};

// TLS (`tls.ca` verifies the router; `tls.cert`/`tls.key` a client certificate, optional) and a
// bearer token read from `token_file` (surrounding whitespace stripped) into `options`; either
// may be empty. INVALID_ARGUMENT naming the file that cannot be read. For the --tls_* and
// --auth_token_file flags of moe-client and moe-bench.
absl::Status AddSecurity(const proto::TlsFiles& tls, const std::string& token_file, MoeClient::Options* options);

// Parses a ForwardResponse into a ForwardResult (copying the output). INTERNAL if malformed.
absl::StatusOr<ForwardResult> ParseForwardResponse(const moe::v1::ForwardResponse& response);

}  // namespace moe::client
