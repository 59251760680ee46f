// server/worker/expert_main.cc
// moe-expert: an expert worker. Loads only the experts it hosts from the checkpoint, runs them
// on a backend and serves moe.v1.ExpertService plus grpc.health.v1 (NOT_SERVING until loaded).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/byte_size.h"
#include "base/cpu_features.h"
#include "base/program.h"
#include "experts/expert_weights.h"
#include "experts/factory/backend_factory.h"
#include "model/checkpoint.h"
#include "proto/message_memory.h"
#include "proto/tls_credentials.h"
#include "server/common/metrics_server.h"
#include "server/common/server_runtime.h"
#include "server/common/token_auth.h"
#include "server/worker/expert_list.h"
#include "server/worker/expert_metrics.h"
#include "server/worker/expert_service.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint: a folder (config.json + safetensors) or a GGUF file (model.gguf, or the first "
          "file of a split set, model-00001-of-0000N.gguf). Required.");
ABSL_FLAG(std::string, experts, "all",
          "Routed experts to host in every MoE layer: 'all', '3', '0-3' or a list like '0-1,6'; add "
          "'shared' to also host every layer's always-on MLP (shared experts, dense layers); 'none' starts "
          "with no experts, for LoadExperts to give it some (needs --admin_token_file).");
ABSL_FLAG(std::string, admin_token_file, "",
          "File holding the admin bearer token: turns on live placement, the LoadExperts/UnloadExperts calls "
          "(a router's --rebalance, or an operator), which must carry 'authorization: Bearer <token>'. Re-read "
          "when it changes. Empty = live placement off (both calls refused). Forward, GetWorkerInfo and health "
          "stay open.");
ABSL_FLAG(std::string, memory_budget, "",
          "Most bytes the hosted experts may take resident (e.g. 64GiB, 512MiB): the start fails past it, and "
          "LoadExperts is refused with RESOURCE_EXHAUSTED; empty = no limit.");
ABSL_FLAG(std::string, shard, "",
          "INDEX/COUNT: host the INDEX-th of COUNT even slices of the experts (INDEX taken modulo COUNT, so "
          "a StatefulSet's pod index works with replicas); overrides --experts' routed part.");
ABSL_FLAG(std::string, listen, "0.0.0.0:50061", "Address to serve on (host:port; port 0 picks one).");
ABSL_FLAG(std::string, backend, "cpu", "Expert backend: cpu, or cuda (a GPU; fails at start without one).");
ABSL_FLAG(int, device, 0, "CUDA device ordinal for --backend=cuda.");
ABSL_FLAG(std::string, cuda_dtype, "bf16", "Weights and activations on the GPU: bf16, f16 or f32 (accumulation is f32).");
ABSL_FLAG(std::string, cuda_gemm, "back_to_back",
          "How a step's per-expert products are issued on the GPU: back_to_back (one cuBLAS GEMM each) or "
          "grouped (one grouped GEMM per projection; the output is rounded to --cuda_dtype once).");
ABSL_FLAG(int, threads, 0, "Compute threads of the CPU backend (oneDNN and our kernels); 0 = every core.");
ABSL_FLAG(std::string, cpu_compute, "auto",
          "CPU backend: auto (bf16 weights computed in bf16 with f32 accumulation, f32 in f32, quantized "
          "experts on f32 activations), f32 (bf16 weights widened to f32 at load: twice the memory, f32 "
          "numerics), int8 (as auto, and experts in a block format — q8_0, q4_0, the K-quants, iq4_xs, "
          "mxfp4, int4 — take activations quantized to 8 bits a value, a scale per 32, at up to 128 rows: "
          "integer dot products, faster decode, ~1.5 % row error) or bf16 (as auto, and those experts take "
          "activations rounded to bf16 from 2 rows at any row count, each weight row decoded once to bf16: on CPUs with "
          "AVX512_BF16, elsewhere f32; ~0.5 % row error).");
ABSL_FLAG(std::string, quantize, "",
          "CPU backend: quantize bf16/f32 expert weights at load to this format and keep them so: q8_0, q4_0, q4_k, "
          "q6_k (llama.cpp's blocks) or int4 (scale and zero point per 128, as AWQ/GPTQ); a quarter to an eighth "
          "of f32's memory, computed from f32 activations; empty = as the checkpoint stores them (FP8 and MXFP4 "
          "checkpoints always stay as stored).");
ABSL_FLAG(int64_t, max_rows, 65536, "Largest number of token rows accepted in one request.");
ABSL_FLAG(int, queue_capacity, 256, "Requests that may wait for compute before RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_batch_rows, 65536,
          "Dynamic batching: requests waiting while a step computes are merged into the next step, up to this "
          "many rows; 0 = one request per step.");
ABSL_FLAG(bool, inline_when_idle, true,
          "Compute a request that finds the worker idle on the gRPC thread that decoded it (no hand-off to the "
          "compute thread); --noinline_when_idle always hands off.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: TLS on this worker's port.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle: callers (the router) must present a certificate it verifies (mTLS).");
ABSL_FLAG(int, health_port, -1,
          "Also serve grpc.health.v1 in plaintext on this port (for probes that cannot speak TLS, e.g. "
          "Kubernetes gRPC probes); 0 picks one, -1 = off.");
ABSL_FLAG(int, tls_reload_s, 10, "How often the TLS files are checked for changes (rotation without restart).");
ABSL_FLAG(int, drain_seconds, 10, "On SIGTERM, how long in-flight calls may take to finish.");
ABSL_FLAG(int, ready_fd, -1, "If set, the bound port is written to this fd once SERVING (for launchers).");
ABSL_FLAG(int, metrics_port, 9092, "Serve Prometheus metrics at http://<listen host>:<port>/metrics; 0 picks a port, -1 turns metrics off.");

int main(int argc, char** argv) {
  moe::proto::KeepFreedMessageMemory();  // large messages reuse memory instead of page-faulting
  moe::server::BlockTerminationSignals();
  moe::base::InitProgram(argc, argv,
      "Serves the experts it hosts over gRPC.\n"
      "  moe-expert --checkpoint=/models/mixtral --experts=0-3 --listen=0.0.0.0:50061");
  const std::string dir = absl::GetFlag(FLAGS_checkpoint);
  if (dir.empty()) {
    std::fprintf(stderr, "moe-expert: --checkpoint is required (see --help)\n");
    return 2;
  }
  auto checkpoint = moe::model::Checkpoint::Open(dir);
  if (!checkpoint.ok()) {
    std::fprintf(stderr, "moe-expert: %s\n", checkpoint.status().ToString().c_str());
    return 1;
  }
  const moe::model::ModelConfig& config = (*checkpoint)->config();
  const bool start_empty = absl::GetFlag(FLAGS_experts) == "none";
  auto ids = start_empty ? absl::StatusOr<moe::server::ExpertSelection>(moe::server::ExpertSelection{})
                         : moe::server::ParseExpertList(absl::GetFlag(FLAGS_experts), config.num_experts);
  if (!ids.ok()) {
    std::fprintf(stderr, "moe-expert: %s\n", ids.status().ToString().c_str());
    return 2;
  }
  if (const std::string shard = absl::GetFlag(FLAGS_shard); !shard.empty()) {
    int index = 0, count = 0;
    const std::vector<std::string> parts = absl::StrSplit(shard, '/');
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &index) || !absl::SimpleAtoi(parts[1], &count) ||
        index < 0 || count < 1 || count > config.num_experts) {
      std::fprintf(stderr, "moe-expert: --shard must be INDEX/COUNT with 1 <= COUNT <= %d, got '%s'\n",
                   config.num_experts, shard.c_str());
      return 2;
    }
    index %= count;
    ids->routed.clear();
    for (int e = index * config.num_experts / count; e < (index + 1) * config.num_experts / count; ++e) {
      ids->routed.push_back(e);
    }
  }
  std::vector<moe::experts::ExpertKey> hosted;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (config.IsMoeLayer(layer)) {
      for (int e : ids->routed) hosted.push_back({layer, e});
    }
    if (ids->always_on && config.HasAlwaysOn(layer)) hosted.push_back({layer, config.AlwaysOnId()});
  }
  int64_t memory_budget = 0;
  if (const std::string budget = absl::GetFlag(FLAGS_memory_budget); !budget.empty()) {
    auto parsed = moe::base::ParseByteSize(budget);
    if (!parsed.ok() || *parsed <= 0) {
      std::fprintf(stderr, "moe-expert: --memory_budget: %s\n",
                   parsed.ok() ? "must be more than 0" : parsed.status().message().data());
      return 2;
    }
    memory_budget = *parsed;
  }
  std::unique_ptr<moe::server::TokenAuth> admin;
  if (const std::string file = absl::GetFlag(FLAGS_admin_token_file); !file.empty()) {
    auto made = moe::server::TokenAuth::FromFile(file);
    if (!made.ok()) {
      std::fprintf(stderr, "moe-expert: --admin_token_file: %s\n", made.status().ToString().c_str());
      return 2;
    }
    admin = *std::move(made);
  }
  if (start_empty && admin == nullptr) {
    std::fprintf(stderr, "moe-expert: --experts=none needs --admin_token_file (nothing else can give it experts)\n");
    return 2;
  }
  if (hosted.empty() && !start_empty) {
    std::fprintf(stderr, "moe-expert: --experts=%s selects nothing in this model\n", absl::GetFlag(FLAGS_experts).c_str());
    return 2;
  }

  const int64_t max_rows = absl::GetFlag(FLAGS_max_rows);
  moe::server::ExpertServiceImpl service(
      {.max_rows = max_rows,
       .queue_capacity = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_queue_capacity))),
       .max_batch_rows = std::max<int64_t>(0, absl::GetFlag(FLAGS_max_batch_rows)),
       .inline_when_idle = absl::GetFlag(FLAGS_inline_when_idle)});
  std::shared_ptr<grpc::ServerCredentials> credentials;
  const moe::proto::TlsFiles tls{.cert = absl::GetFlag(FLAGS_tls_cert),
                                 .key = absl::GetFlag(FLAGS_tls_key),
                                 .ca = absl::GetFlag(FLAGS_tls_ca),
                                 .reload_seconds = absl::GetFlag(FLAGS_tls_reload_s)};
  if (tls.enabled()) {
    auto made = moe::proto::ServerTls(tls, /*require_client_cert=*/!tls.ca.empty());
    if (!made.ok()) {
      std::fprintf(stderr, "moe-expert: %s\n", made.status().ToString().c_str());
      return 1;
    }
    credentials = *made;
  }
  int port = 0;
  auto server = moe::server::StartServer(
      {&service}, {.listen = absl::GetFlag(FLAGS_listen),
                   .max_message_bytes = max_rows * config.hidden_size * 4 + (1 << 20),
                   .credentials = credentials},
      &port);
  if (!server.ok()) {
    std::fprintf(stderr, "moe-expert: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::string cuda_dtype = absl::GetFlag(FLAGS_cuda_dtype);
  if (cuda_dtype != "bf16" && cuda_dtype != "f16" && cuda_dtype != "f32") {
    std::fprintf(stderr, "moe-expert: --cuda_dtype must be bf16, f16 or f32\n");
    (*server)->Shutdown();
    return 2;
  }
  if (absl::GetFlag(FLAGS_cpu_compute) != "auto" && absl::GetFlag(FLAGS_cpu_compute) != "f32" &&
      absl::GetFlag(FLAGS_cpu_compute) != "int8" && absl::GetFlag(FLAGS_cpu_compute) != "bf16") {
    std::fprintf(stderr, "moe-expert: --cpu_compute must be auto, f32, int8 or bf16\n");
    (*server)->Shutdown();
    return 2;
  }
  const std::string cuda_gemm = absl::GetFlag(FLAGS_cuda_gemm);
  if (cuda_gemm != "back_to_back" && cuda_gemm != "grouped") {
    std::fprintf(stderr, "moe-expert: --cuda_gemm must be back_to_back or grouped\n");
    (*server)->Shutdown();
    return 2;
  }
  moe::experts::BackendOptions backend_options{
      .kind = absl::GetFlag(FLAGS_backend),
      .threads = absl::GetFlag(FLAGS_threads),
      .cpu_f32_compute = absl::GetFlag(FLAGS_cpu_compute) == "f32",
      .quantize = absl::GetFlag(FLAGS_quantize),
      .cpu_int8_activations = absl::GetFlag(FLAGS_cpu_compute) == "int8",
      .cpu_bf16_activations = absl::GetFlag(FLAGS_cpu_compute) == "bf16",
      .device = absl::GetFlag(FLAGS_device),
      .cuda_dtype = cuda_dtype == "bf16"  ? moe::model::DType::kBF16
                    : cuda_dtype == "f16" ? moe::model::DType::kF16
                                          : moe::model::DType::kF32,
      .cuda_grouped_gemm = cuda_gemm == "grouped"};
  const auto load_start = std::chrono::steady_clock::now();
  int64_t estimate = 0;
  auto backend = moe::experts::ChangeExperts(**checkpoint, nullptr, hosted, {}, backend_options,
                                             memory_budget > 0 ? memory_budget : -1, &estimate);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  if (backend.ok() && *backend != nullptr && memory_budget > 0 && (*backend)->resident().bytes > memory_budget) {
    backend = absl::ResourceExhaustedError(absl::StrCat("the experts take ", (*backend)->resident().bytes,
                                                        " bytes resident, past --memory_budget"));
  }
  if (!backend.ok()) {
    std::fprintf(stderr, "moe-expert: %s\n", backend.status().ToString().c_str());
    (*server)->Shutdown();
    return 1;
  }
  if (admin != nullptr) {
    service.EnableLivePlacement(
        {.change =
             [&checkpoint = **checkpoint, backend_options](
                 const moe::experts::ExpertBackend* current, absl::Span<const moe::experts::ExpertKey> add,
                 absl::Span<const moe::experts::ExpertKey> remove, int64_t budget, int64_t* added) {
               return moe::experts::ChangeExperts(checkpoint, current, add, remove, backend_options, budget, added);
             },
         .admin = admin.get(),
         .memory_budget = memory_budget,
         .always_on_id = config.AlwaysOnId()});
  }
  moe::v1::GetWorkerInfoResponse info;
  info.set_model_type(config.model_type);
  info.set_num_layers(config.num_layers);
  info.set_num_experts(config.num_experts);
  info.set_weight_dtype(config.torch_dtype);
  std::shared_ptr<moe::experts::ExpertBackend> shared = *std::move(backend);  // null: hosting nothing
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<moe::server::ExpertMetrics> metrics;
  moe::server::MetricsServer metrics_server;
  metrics_server.port = -1;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    metrics = std::make_unique<moe::server::ExpertMetrics>(
        *registry, shared != nullptr ? shared->hosted() : std::vector<moe::experts::ExpertKey>{}, config.AlwaysOnId());
    auto started = moe::server::StartMetricsServer(moe::server::HostOf(absl::GetFlag(FLAGS_listen)),
                                                   absl::GetFlag(FLAGS_metrics_port), registry);
    if (!started.ok()) {
      std::fprintf(stderr, "moe-expert: %s\n", started.status().ToString().c_str());
      (*server)->Shutdown();
      return 1;
    }
    metrics_server = std::move(*started);
  }
  int health_port = -1;
  if (absl::GetFlag(FLAGS_health_port) >= 0) {
    health_port = 0;
    absl::Status mirrored = moe::server::StartHealthMirror(
        absl::StrCat(moe::server::HostOf(absl::GetFlag(FLAGS_listen)), ":", absl::GetFlag(FLAGS_health_port)),
        &health_port);
    if (!mirrored.ok()) {
      std::fprintf(stderr, "moe-expert: %s\n", mirrored.ToString().c_str());
      (*server)->Shutdown();
      return 1;
    }
  }
  std::fprintf(stderr,
               "moe-expert: serving checkpoint=%s type=%s experts=%s layers=%d backend=%s device=\"%s\" "
               "checkpoint_weights=%s loaded_in=%.2fs port=%d metrics_port=%d health_port=%d tls=%s "
               "live_placement=%s memory_budget=%s\n",
               dir.c_str(), config.model_type.c_str(),
               start_empty ? "none" : (absl::StrJoin(ids->routed, ",") + (ids->always_on ? "+shared" : "")).c_str(),
               config.num_layers, backend_options.kind.c_str(),
               shared != nullptr ? shared->device().c_str()
                                 : absl::StrCat(moe::base::DetectCpuFeatures().model, "; no experts yet").c_str(),
               absl::EndsWith(dir, ".gguf")     ? "gguf (the resident format is in device=)"
               : config.mxfp4                   ? "mxfp4"
               : config.fp8_block_n > 0         ? "fp8 e4m3 blocks"
               : !config.int4_method.empty()    ? (config.int4_method + " int4").c_str()
               : !config.compressed_tensors.empty() ? "compressed-tensors (the resident format is in device=)"
                                                : config.torch_dtype.c_str(),
               load_s, port, metrics_server.port, health_port,
               credentials == nullptr ? "off" : (tls.ca.empty() ? "server" : "mTLS (client certificate required)"),
               admin != nullptr ? "on (admin token)" : "off",
               memory_budget > 0 ? moe::base::FormatByteSize(memory_budget).c_str() : "none");
  std::atomic<bool> device_failed{false};
  service.SetFatalHandler([&](const absl::Status& status) {
    std::fprintf(stderr, "moe-expert: fatal: %s; NOT_SERVING, draining and exiting\n", status.ToString().c_str());
    device_failed = true;
    moe::server::SetReady(**server, {"moe.v1.ExpertService"}, false);  // and on the health mirror
    ::kill(::getpid(), SIGTERM);  // the main thread drains and exits
  });
  service.SetBackend(shared, std::move(info), metrics.get());
  moe::server::SetReady(**server, {"moe.v1.ExpertService"}, true);
  moe::server::NotifyReadyFd(absl::GetFlag(FLAGS_ready_fd), port, metrics_server.port);
  moe::server::WaitForTerminationAndDrain(**server, absl::Seconds(absl::GetFlag(FLAGS_drain_seconds)));
  service.JoinAdminCalls();  // a placement change still loading finishes its call on this server
  // The gRPC drain is complete; no scrape may read the metrics once they start being destroyed.
  moe::server::StopMetricsServer(metrics_server);
  std::fprintf(stderr, "moe-expert: stopped\n");
  return device_failed ? 3 : 0;
}
