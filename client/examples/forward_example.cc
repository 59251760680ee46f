// client/examples/forward_example.cc
// The C++ example of docs/CLIENTS.md, built with the project (bin/moe-forward-example) and run by
// tests/integration/docs_examples_test.sh: asks the router for its model, sends 16 random tokens
// through layer 0 with their routing, prints token 0's experts, then does the same on a stream.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "base/program.h"
#include "client/moe_client.h"

ABSL_FLAG(std::string, router, "", "Router address host:port (default: $MOE_ROUTER, else localhost:50051).");

int main(int argc, char** argv) {
  moe::base::InitProgram(argc, argv,
      "The C++ client example of docs/CLIENTS.md: one Forward with its routing, then two steps on a stream.\n"
      "  moe-forward-example --router=localhost:50051");
  std::string address = absl::GetFlag(FLAGS_router);
  if (address.empty()) address = std::getenv("MOE_ROUTER") ? std::getenv("MOE_ROUTER") : "localhost:50051";
  auto client = moe::client::MoeClient::Connect(address, {.deadline = absl::Seconds(30)});
  absl::StatusOr<moe::v1::GetModelInfoResponse> info = client->GetModelInfo();
  if (!info.ok()) {
    std::fprintf(stderr, "GetModelInfo: %s\n", info.status().ToString().c_str());
    return 1;
  }
  const int64_t tokens = 16, hidden = info->hidden_size();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(tokens * hidden);
  for (float& v : x) v = normal(rng);
  absl::StatusOr<moe::client::ForwardResult> r =
      client->Forward(/*layer=*/0, moe::model::Tensor::FromF32(x, {tokens, hidden}), /*return_routing=*/true);
  if (!r.ok()) {
    std::fprintf(stderr, "Forward: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf("%s: token 0 went to experts", info->model_type().c_str());
  for (size_t j = 0; j < r->experts[0].size(); ++j) std::printf(" %d (%.3f)", r->experts[0][j], r->weights[0][j]);
  std::printf("; output [%ld, %ld] in %.3f ms\n", static_cast<long>(r->output.dim(0)),
              static_cast<long>(r->output.dim(1)), absl::ToDoubleMilliseconds(r->latency));
  // The same layer twice more on one stream (a decoder's steps).
  std::unique_ptr<moe::client::ForwardStream> stream = client->OpenStream();
  for (int step = 0; step < 2; ++step) {
    absl::StatusOr<moe::client::ForwardResult> s = stream->Forward(0, moe::model::Tensor::FromF32(x, {tokens, hidden}));
    if (!s.ok()) {
      std::fprintf(stderr, "ForwardStream: %s\n", s.status().ToString().c_str());
      return 1;
    }
    std::printf("stream step %d: %.3f ms, output equals the unary one: %s\n", step, absl::ToDoubleMilliseconds(s->latency),
                s->output.f32() == r->output.f32() ? "yes" : "no");
  }
  return stream->Close().ok() ? 0 : 1;
}
