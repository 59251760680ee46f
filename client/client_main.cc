// client/client_main.cc
// moe-client: sends tokens (seeded random or a .npy file) through one MoE layer or every layer in
// sequence on a router; prints output statistics, latency and per-expert load; --check recomputes
// each layer in-process from the checkpoint and prints the error; --show_routing prints each
// token's experts.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/program.h"
#include "client/moe_client.h"
#include "client/npy.h"
#include "experts/cpu/cpu_backend.h"
#include "experts/expert_weights.h"
#include "model/checkpoint.h"
#include "proto/message_memory.h"
#include "router/moe_model.h"
#include "router/openblas_kernels.h"

ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle: talk TLS to the router and verify it with this.");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate for a router that asks for one (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, auth_token_file, "", "File holding the router's bearer token (--auth_token_file there).");
ABSL_FLAG(std::string, router, "", "Router address host:port (default: $MOE_ROUTER, else localhost:50051).");
ABSL_FLAG(int64_t, tokens, 16, "Random tokens to send (ignored with --npy).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the random tokens.");
ABSL_FLAG(std::string, npy, "", "A float32/float16 .npy file of shape [tokens, hidden] to send instead.");
ABSL_FLAG(int64_t, layer, 0, "MoE layer to run (ignored with --all_layers).");
ABSL_FLAG(bool, all_layers, false,
          "Run every layer in sequence; layer l+1 gets x + MoE_l(x), the residual stream of a decoder.");
ABSL_FLAG(std::string, dtype, "f32", "Wire dtype of the tokens: f32, bf16 or f16.");
ABSL_FLAG(bool, check, false, "Recompute each layer in-process from --checkpoint and print the error.");
ABSL_FLAG(std::string, checkpoint, "", "Checkpoint (folder or GGUF file) for --check.");
ABSL_FLAG(bool, show_routing, false, "Print the experts and weights of every token.");
ABSL_FLAG(int64_t, deadline_ms, 60000, "Deadline of each call.");
ABSL_FLAG(std::string, save_output, "", "Write the (last) layer's output to this float32 .npy file.");
ABSL_FLAG(std::string, save_routing, "",
          "Write the (last) layer's routing as JSON: per token its experts, weights and always-on weight.");

namespace {

using moe::model::DType;
using moe::model::Tensor;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "moe-client: %s\n", s.ToString().c_str());
  return 1;
}

struct Errors {
  double max_abs = 0, max_rel = 0;
};

// max |a - b| and max |a - b| / max |b|.
Errors Compare(absl::Span<const float> got, absl::Span<const float> ref) {
  Errors e;
  double scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e.max_abs = std::max(e.max_abs, double(std::abs(got[i] - ref[i])));
    scale = std::max(scale, double(std::abs(ref[i])));
  }
  e.max_rel = scale > 0 ? e.max_abs / scale : e.max_abs;
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  moe::router::EnsureOpenBlasKernels(argv);  // the gate's GEMM off OpenBLAS's SSE3 fallback; may re-exec
  moe::proto::KeepFreedMessageMemory();  // large messages reuse memory instead of page-faulting
  moe::base::InitProgram(argc, argv,
      "Run tokens through a moe-router.\n"
      "  moe-client --router=localhost:50051 --tokens=512 --all_layers --check --checkpoint=/tmp/model");
  std::string address = absl::GetFlag(FLAGS_router);
  if (address.empty()) address = std::getenv("MOE_ROUTER") ? std::getenv("MOE_ROUTER") : "localhost:50051";
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  const DType dtype = dtype_name == "bf16" ? DType::kBF16 : dtype_name == "f16" ? DType::kF16 : DType::kF32;
  if (dtype_name != "f32" && dtype_name != "bf16" && dtype_name != "f16") {
    std::fprintf(stderr, "moe-client: --dtype must be f32, bf16 or f16\n");
    return 2;
  }
  moe::client::MoeClient::Options options;
  options.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  if (absl::Status secured = moe::client::AddSecurity({.cert = absl::GetFlag(FLAGS_tls_cert),
                                                        .key = absl::GetFlag(FLAGS_tls_key),
                                                        .ca = absl::GetFlag(FLAGS_tls_ca)},
                                                       absl::GetFlag(FLAGS_auth_token_file), &options);
      !secured.ok()) {
    std::fprintf(stderr, "%s\n", secured.ToString().c_str());
    return 2;
  }
  auto client = moe::client::MoeClient::Connect(address, options);
  auto info = client->GetModelInfo();
  if (!info.ok()) return Fail(info.status());
  const int64_t hidden = info->hidden_size();
  const int num_experts = info->num_experts();
  std::printf("router %s: model %s (%s), %d layers, %d experts, top-%d, hidden %ld, %s\n", address.c_str(),
              info->model().c_str(), info->routing().description().c_str(), info->num_layers(), num_experts,
              info->top_k(), static_cast<long>(hidden), info->local() ? "local experts" : "networked experts");

  Tensor x;
  if (!absl::GetFlag(FLAGS_npy).empty()) {
    auto read = moe::client::ReadNpy(absl::GetFlag(FLAGS_npy));
    if (!read.ok()) return Fail(read.status());
    x = read->ConvertTo(dtype);
  } else {
    const int64_t n = absl::GetFlag(FLAGS_tokens);
    if (n < 1) return Fail(absl::InvalidArgumentError("--tokens must be >= 1"));
    std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> values(static_cast<size_t>(n * hidden));
    for (float& v : values) v = normal(rng);
    x = Tensor::FromF32(values, {n, hidden}).ConvertTo(dtype);
  }
  const int64_t n = x.dim(0);

  std::unique_ptr<moe::model::Checkpoint> checkpoint;
  std::unique_ptr<moe::router::MoeModel> reference;
  std::unique_ptr<moe::experts::CpuExpertBackend> backend;
  if (absl::GetFlag(FLAGS_check)) {
    auto ckpt = moe::model::Checkpoint::Open(absl::GetFlag(FLAGS_checkpoint));
    if (!ckpt.ok()) return Fail(ckpt.status());
    checkpoint = std::move(*ckpt);
    auto model = moe::router::MoeModel::Create(*checkpoint);
    if (!model.ok()) return Fail(model.status());
    reference = std::move(*model);
    std::vector<moe::experts::ExpertKey> keys = moe::experts::AllExperts(checkpoint->config());
    for (const auto& key : moe::experts::AlwaysOnExperts(checkpoint->config())) keys.push_back(key);
    auto cpu = moe::experts::CpuExpertBackend::Create(*checkpoint, keys, {});
    if (!cpu.ok()) return Fail(cpu.status());
    backend = std::move(*cpu);
  }

  std::vector<int64_t> layers;
  if (absl::GetFlag(FLAGS_all_layers)) {
    for (int l = 0; l < info->num_layers(); ++l) layers.push_back(l);
  } else {
    layers.push_back(absl::GetFlag(FLAGS_layer));
  }
  std::vector<std::vector<int64_t>> load(num_experts, std::vector<int64_t>(layers.size(), 0));
  double worst_rel = 0;
  for (size_t li = 0; li < layers.size(); ++li) {
    auto result = client->Forward(layers[li], x, /*return_routing=*/true);
    if (!result.ok()) return Fail(result.status());
    const Tensor out = result->output.ToF32();
    double sum = 0, sum_sq = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (float v : out.f32()) {
      sum += v;
      sum_sq += double(v) * v;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    const double mean = sum / out.num_elements();
    std::printf("layer %ld: %ld tokens %s, %.2f ms, output mean %+.4f std %.4f min %+.3f max %+.3f\n",
                static_cast<long>(layers[li]), static_cast<long>(n), std::string(moe::model::DTypeName(dtype)).c_str(),
                absl::ToDoubleMilliseconds(result->latency), mean,
                std::sqrt(std::max(0.0, sum_sq / out.num_elements() - mean * mean)), lo, hi);
    for (int64_t t = 0; t < n; ++t) {
      for (int e : result->experts[t]) {
        if (e >= 0 && e < num_experts) ++load[e][li];
      }
      if (absl::GetFlag(FLAGS_show_routing)) {
        std::vector<std::string> parts;
        for (size_t j = 0; j < result->experts[t].size(); ++j) {
          parts.push_back(absl::StrFormat("%d (%.3f)", result->experts[t][j], result->weights[t][j]));
        }
        std::printf("  token %ld → %s\n", static_cast<long>(t), absl::StrJoin(parts, ", ").c_str());
      }
    }
    if (!absl::GetFlag(FLAGS_save_output).empty()) {
      if (absl::Status s = moe::client::WriteNpy(absl::GetFlag(FLAGS_save_output), result->output); !s.ok()) return Fail(s);
    }
    if (!absl::GetFlag(FLAGS_save_routing).empty()) {
      std::vector<std::string> tokens;
      for (int64_t t = 0; t < n; ++t) {
        tokens.push_back(absl::StrFormat(R"({"experts":[%s],"weights":[%s],"always_on_weight":%.9g})",
                                         absl::StrJoin(result->experts[t], ","),
                                         absl::StrJoin(result->weights[t], ",", [](std::string* o, float w) {
                                           absl::StrAppend(o, absl::StrFormat("%.9g", w));
                                         }),
                                         result->always_on_weights[t]));
      }
      std::ofstream(absl::GetFlag(FLAGS_save_routing)) << "[" << absl::StrJoin(tokens, ",\n") << "]\n";
    }
    if (reference != nullptr) {
      const Tensor in = x.ToF32();
      auto layer = reference->layer(layers[li]);
      if (!layer.ok()) return Fail(layer.status());
      auto expected = (*layer)->Forward(in.f32(), n, *backend);
      if (!expected.ok()) return Fail(expected.status());
      const Errors err = Compare(out.f32(), *expected);
      worst_rel = std::max(worst_rel, err.max_rel);
      std::printf("  check vs in-process: max abs err %.3g, max rel err %.3g\n", err.max_abs, err.max_rel);
    }
    // The next layer gets the residual stream x + MoE(x), as in a decoder (without attention).
    const Tensor in = x.ToF32();
    std::vector<float> next(in.f32().begin(), in.f32().end());
    for (size_t i = 0; i < next.size(); ++i) next[i] += out.f32()[i];
    x = Tensor::FromF32(next, in.shape()).ConvertTo(dtype);
  }

  std::printf("\nper-expert load (tokens routed)\n%8s", "expert");
  for (int64_t l : layers) std::printf(" %8s", absl::StrCat("layer ", l).c_str());
  std::printf(" %8s %7s\n", "total", "share");
  int64_t grand = 0, busiest = 0;
  std::vector<int64_t> totals(num_experts, 0);
  for (int e = 0; e < num_experts; ++e) {
    for (int64_t c : load[e]) totals[e] += c;
    grand += totals[e];
    busiest = std::max(busiest, totals[e]);
  }
  for (int e = 0; e < num_experts; ++e) {
    std::printf("%8d", e);
    for (int64_t c : load[e]) std::printf(" %8ld", static_cast<long>(c));
    std::printf(" %8ld %6.1f%%\n", static_cast<long>(totals[e]), grand ? 100.0 * totals[e] / grand : 0.0);
  }
  if (busiest > 0) {
    std::printf("balancedness (mean/max tokens per expert): %.3f\n", double(grand) / num_experts / busiest);
  }
  if (reference != nullptr) std::printf("parity: worst max rel err %.3g over %zu layer(s)\n", worst_rel, layers.size());
  return 0;
}
