// server/router/router_main.cc
// moe-router: the public MoE endpoint. Loads the gates from the checkpoint, learns the placement
// from its workers (or runs every expert in-process with --local) and serves moe.v1.MoeService
// plus grpc.health.v1.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/program.h"
#include "experts/expert_weights.h"
#include "experts/factory/backend_factory.h"
#include "model/checkpoint.h"
#include "proto/message_memory.h"
#include "proto/tls_credentials.h"
#include "router/moe_model.h"
#include "router/openblas_kernels.h"
#include "server/common/compute_queue.h"
#include "server/common/metrics_server.h"
#include "server/common/rate_limited_log.h"
#include "server/common/server_runtime.h"
#include "server/router/moe_service.h"
#include "server/router/oip_service.h"
#include "server/router/router_metrics.h"
#include "server/common/token_auth.h"
#include "server/router/expert_load.h"
#include "server/router/placement_controller.h"
#include "server/router/worker_discovery.h"
#include "server/router/worker_pool.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint: a folder (config.json + safetensors) or a GGUF file (model.gguf, or the first "
          "file of a split set, model-00001-of-0000N.gguf). Required.");
ABSL_FLAG(std::vector<std::string>, workers, {},
          "The workers: comma-separated addresses (host:port; several may host the same experts: replicas), or "
          "dns:///NAME:PORT (every address NAME resolves to, e.g. a Kubernetes headless Service, looked up again "
          "every --discovery_interval_s: workers join and leave), or file:///PATH (addresses in a file, re-read "
          "as often).");
ABSL_FLAG(int, discovery_interval_s, 5,
          "How often a dns:/// or file:/// --workers source is looked up again. A worker that appears joins; one that "
          "disappears is drained (under --rebalance=auto its experts move first) and removed.");
ABSL_FLAG(bool, local, false, "Run every expert in this process instead of on workers.");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "Address to serve on (host:port; port 0 picks one).");
ABSL_FLAG(std::string, model_name, "", "Name clients may put in requests; default: the checkpoint folder's name.");
ABSL_FLAG(int64_t, deadline_ms, 30000, "Deadline of a Forward whose caller sets none (and the cap on any).");
ABSL_FLAG(int64_t, max_tokens, 8192, "Most tokens in one Forward; more is RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_batches_in_flight, 1,
          "Dynamic batching: dispatches per layer (to the workers, or to the --local backend) before concurrent "
          "Forwards wait and then leave together as one (up to --max_tokens tokens); 0 = each on its own.");
ABSL_FLAG(int64_t, batch_stall_ms, 250,
          "A dispatch out longer than this stops holding up the Forwards waiting behind it (a hung worker "
          "must not stall a layer).");
ABSL_FLAG(int64_t, health_check_interval_ms, 250,
          "How often the router asks every worker grpc.health.v1 Check; 0 turns the checks off.");
ABSL_FLAG(int64_t, health_check_timeout_ms, 500,
          "A Check not answered within this has failed; --health_check_failures in a row mark the worker "
          "down: new dispatches avoid it and its calls in flight fail over to replicas.");
ABSL_FLAG(int, health_check_failures, 2, "Failed health checks in a row that mark a worker down.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: TLS on the router's port, and presented to workers (mTLS).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that verifies the workers' certificates (and clients' that present one); "
          "with --tls_cert, router→worker calls use TLS.");
ABSL_FLAG(int, health_port, -1,
          "Also serve grpc.health.v1 in plaintext on this port (for probes that cannot speak TLS, e.g. "
          "Kubernetes gRPC probes); 0 picks one, -1 = off.");
ABSL_FLAG(int, tls_reload_s, 10, "How often the TLS files are checked for changes (rotation without restart).");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding a bearer token every call must carry (authorization: Bearer <token>); re-read "
          "when it changes. Health stays open. Empty: no authentication.");
ABSL_FLAG(std::string, on_expert_unavailable, "fail",
          "When every replica of an expert a token needs is down: fail (UNAVAILABLE), reroute (to the "
          "token's next-best live experts, renormalised; token-choice routing) or drop (its contribution). "
          "Affected tokens are marked in the response and counted in moe_router_degraded_tokens_total.");
ABSL_FLAG(int, max_inflight, 256,
          "Forwards admitted and not yet answered; one more is refused at once with RESOURCE_EXHAUSTED "
          "(admission control: overload never becomes timeouts).");
ABSL_FLAG(bool, each_token_once, true,
          "Send each token to a worker once, with its experts there, and take back one weighted sum per token "
          "(dispatch and combine bytes fall by up to top-k); false: one row per (token, expert) each way.");
ABSL_FLAG(int, micro_batches, 1,
          "Networked: a dispatch of at least --micro_batch_min_tokens tokens leaves as this many micro-batches at "
          "once, so workers compute one while the router sends or combines another; 1 = the serial path.");
ABSL_FLAG(int64_t, micro_batch_min_tokens, 256, "The smallest dispatch that --micro_batches cuts.");
ABSL_FLAG(std::string, rebalance, "off",
          "Live placement from the measured load: off; plan (every --rebalance_interval_s, log and export the "
          "placement it would apply: moe_placement_imbalance_ratio); auto (apply it when it lowers the worker load "
          "imbalance by --rebalance_min_gain: hot experts get the --redundant_experts replicas, through the workers' "
          "LoadExperts/UnloadExperts, without failing a request). auto also places experts no worker hosts at start "
          "(workers started with --experts=none). Needs --worker_admin_token_file for auto.");
ABSL_FLAG(int, rebalance_interval_s, 30, "Seconds between placement rounds; the load is counted over one interval.");
ABSL_FLAG(int, redundant_experts, 0, "Extra replicas per MoE layer the placement gives to its hottest experts.");
ABSL_FLAG(double, rebalance_min_gain, 0.1,
          "auto applies a plan only if it lowers the predicted imbalance (max/mean worker load) by this fraction.");
ABSL_FLAG(int64_t, rebalance_min_pairs, 1000, "Token-expert pairs an interval needs before a round plans anything.");
ABSL_FLAG(std::string, worker_admin_token_file, "",
          "File holding the workers' admin token (their --admin_token_file), sent with LoadExperts/UnloadExperts.");
ABSL_FLAG(int, connect_timeout_s, 60, "How long to wait at start for each worker's GetWorkerInfo.");
ABSL_FLAG(std::string, backend, "cpu", "Expert backend in --local mode.");
ABSL_FLAG(int, threads, 0, "Compute threads of the CPU backend in --local mode (and shared experts); 0 = every core.");
ABSL_FLAG(std::string, cpu_compute, "auto",
          "CPU backend: auto (bf16 weights computed in bf16, f32 accumulation), f32 (bf16 widened at load) or "
          "int8 (experts in a block format — q8_0, q4_0, the K-quants, iq4_xs, mxfp4, int4 — on activations "
          "quantized to 8 bits at up to 128 rows: integer dot products, ~1.5 % row error) or bf16 (those experts "
          "on activations rounded to bf16 from 2 rows, on CPUs with AVX512_BF16: ~0.5 % row error).");
ABSL_FLAG(std::string, quantize, "",
          "--local and the router's always-on MLPs: " "CPU backend: quantize bf16/f32 expert weights at load to this format and keep them so: q8_0, q4_0, q4_k, "
          "q6_k (llama.cpp's blocks) or int4 (scale and zero point per 128, as AWQ/GPTQ); a quarter to an eighth "
          "of f32's memory, computed from f32 activations; empty = as the checkpoint stores them (FP8 and MXFP4 "
          "checkpoints always stay as stored).");
ABSL_FLAG(int, queue_capacity, 256, "--local: requests that may wait for compute.");
ABSL_FLAG(int, drain_seconds, 10, "On SIGTERM, how long in-flight calls may take to finish.");
ABSL_FLAG(std::string, shared_experts, "router",
          "Where the always-on MLPs (shared experts, dense layers) run: 'router' (its own backend) or "
          "'workers' (workers started with --experts=...,shared).");
ABSL_FLAG(std::string, routing_policy, "", "Override the family's routing: token_choice, expert_choice or balanced.");
ABSL_FLAG(double, capacity_factor, -1, "Expert capacity factor C = ceil(f·n·k/E); 0 = unlimited; -1 = the family's.");
ABSL_FLAG(std::string, overflow, "", "Past capacity: drop (default) or reroute to the next-best expert with room.");
ABSL_FLAG(int, top_k, 0, "Override experts per token (0 = the family's).");
ABSL_FLAG(bool, dense_mode, false, "Send every token to every expert (top_k = E): the dense baseline.");
ABSL_FLAG(std::string, norm_topk_prob, "auto", "Renormalise the top-k weights: auto (the config's), true or false.");
ABSL_FLAG(double, noise_std, 0, "Noisy top-k: add noise_std·N(0,1) to the logits (0 = off).");
ABSL_FLAG(uint64_t, noise_seed, 0, "Seed of the noisy top-k noise (per token, reproducible).");
ABSL_FLAG(int, ready_fd, -1, "If set, the bound port is written to this fd once SERVING (for launchers).");
ABSL_FLAG(int, metrics_port, 9091, "Serve Prometheus metrics at http://<listen host>:<port>/metrics; 0 picks a port, -1 turns metrics off.");

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "moe-router: %s\n", status.ToString().c_str());
  return 1;
}

absl::StatusOr<moe::router::RoutingOverrides> OverridesFromFlags() {
  moe::router::RoutingOverrides o;
  if (const std::string p = absl::GetFlag(FLAGS_routing_policy); !p.empty()) {
    auto policy = moe::router::ParsePolicy(p);
    if (!policy.ok()) return policy.status();
    o.policy = *policy;
  }
  if (absl::GetFlag(FLAGS_capacity_factor) >= 0) o.capacity_factor = absl::GetFlag(FLAGS_capacity_factor);
  if (const std::string v = absl::GetFlag(FLAGS_overflow); !v.empty()) {
    auto overflow = moe::router::ParseOverflow(v);
    if (!overflow.ok()) return overflow.status();
    o.overflow = *overflow;
  }
  if (absl::GetFlag(FLAGS_top_k) > 0) o.top_k = absl::GetFlag(FLAGS_top_k);
  o.dense = absl::GetFlag(FLAGS_dense_mode);
  const std::string norm = absl::GetFlag(FLAGS_norm_topk_prob);
  if (norm == "true" || norm == "false") {
    o.norm_topk_prob = norm == "true";
  } else if (norm != "auto") {
    return absl::InvalidArgumentError("--norm_topk_prob must be auto, true or false");
  }
  if (absl::GetFlag(FLAGS_noise_std) != 0) o.noise_std = absl::GetFlag(FLAGS_noise_std);
  if (absl::GetFlag(FLAGS_noise_seed) != 0) o.noise_seed = absl::GetFlag(FLAGS_noise_seed);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread: may re-execute the process with OPENBLAS_CORETYPE set (the gate's GEMM).
  const std::string blas = moe::router::EnsureOpenBlasKernels(argv);
  moe::proto::KeepFreedMessageMemory();  // large messages reuse memory instead of page-faulting
  moe::server::BlockTerminationSignals();
  moe::base::InitProgram(argc, argv,
      "Routes tokens to expert workers and combines their outputs.\n"
      "  moe-router --checkpoint=/models/mixtral --workers=host-a:50061,host-b:50061\n"
      "  moe-router --checkpoint=/models/mixtral --local");
  const std::string dir = absl::GetFlag(FLAGS_checkpoint);
  const bool local = absl::GetFlag(FLAGS_local);
  if (dir.empty() || (!local && absl::GetFlag(FLAGS_workers).empty())) {
    std::fprintf(stderr, "moe-router: --checkpoint and one of --workers or --local are required (see --help)\n");
    return 2;
  }
  moe::server::WorkerSource source;
  std::vector<std::string> addresses;
  if (!local) {
    auto parsed = moe::server::ParseWorkerSource(absl::GetFlag(FLAGS_workers));
    if (!parsed.ok()) return Fail(parsed.status());
    source = *std::move(parsed);
    // A dns:/// or file:/// source may still be empty at start (workers scheduled after the
    // router): looked up again until it names a worker or --connect_timeout_s passes.
    const absl::Time give_up = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_connect_timeout_s));
    while (true) {
      auto resolved = moe::server::ResolveWorkers(source);
      if (resolved.ok() && !resolved->empty()) {
        addresses = *std::move(resolved);
        break;
      }
      if (absl::Now() >= give_up) {
        return Fail(resolved.ok() ? absl::UnavailableError("--workers names no worker yet") : resolved.status());
      }
      absl::SleepFor(absl::Seconds(1));  // a lookup's pacing, while the workers come up
    }
  }
  auto checkpoint = moe::model::Checkpoint::Open(dir);
  if (!checkpoint.ok()) return Fail(checkpoint.status());
  auto overrides = OverridesFromFlags();
  if (!overrides.ok()) return Fail(overrides.status());
  const std::string shared_on = absl::GetFlag(FLAGS_shared_experts);
  if (shared_on != "router" && shared_on != "workers") {
    return Fail(absl::InvalidArgumentError("--shared_experts must be router or workers"));
  }
  auto model = moe::router::MoeModel::Create(**checkpoint, *overrides);
  if (!model.ok()) return Fail(model.status());
  std::shared_ptr<const moe::router::MoeModel> shared_model(std::move(*model));
  const moe::model::ModelConfig& config = shared_model->config();

  moe::server::MoeServiceOptions options;
  options.model_name = absl::GetFlag(FLAGS_model_name);
  if (options.model_name.empty()) {
    options.model_name = std::filesystem::path(dir).lexically_normal().filename().string();
    if (options.model_name.empty()) options.model_name = std::filesystem::path(dir).parent_path().filename().string();
  }
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.default_deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  options.max_batches_in_flight = std::max(0, absl::GetFlag(FLAGS_max_batches_in_flight));
  options.batch_stall = absl::Milliseconds(std::max<int64_t>(1, absl::GetFlag(FLAGS_batch_stall_ms)));
  options.max_inflight = std::max(1, absl::GetFlag(FLAGS_max_inflight));
  options.each_token_once = absl::GetFlag(FLAGS_each_token_once);
  options.micro_batching = {.parts = std::max(1, absl::GetFlag(FLAGS_micro_batches)),
                            .min_tokens = std::max<int64_t>(2, absl::GetFlag(FLAGS_micro_batch_min_tokens))};
  if (const std::string mode = absl::GetFlag(FLAGS_on_expert_unavailable); mode == "reroute") {
    options.on_unavailable = moe::server::OnUnavailable::kReroute;
  } else if (mode == "drop") {
    options.on_unavailable = moe::server::OnUnavailable::kDrop;
  } else if (mode != "fail") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--on_expert_unavailable must be fail, reroute or drop, not '", mode, "'")));
  }
  const int64_t row_bytes = int64_t{config.hidden_size} * 4;

  const moe::proto::TlsFiles tls{.cert = absl::GetFlag(FLAGS_tls_cert),
                                 .key = absl::GetFlag(FLAGS_tls_key),
                                 .ca = absl::GetFlag(FLAGS_tls_ca),
                                 .reload_seconds = absl::GetFlag(FLAGS_tls_reload_s)};
  std::unique_ptr<moe::server::TokenAuth> auth;
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    auto loaded = moe::server::TokenAuth::FromFile(path);
    if (!loaded.ok()) return Fail(loaded.status());
    auth = std::move(*loaded);
  }
  std::unique_ptr<moe::experts::ExpertBackend> backend;
  std::unique_ptr<moe::server::ComputeQueue> queue;
  std::unique_ptr<moe::server::WorkerPool> pool;
  const std::string rebalance = absl::GetFlag(FLAGS_rebalance);
  if (const std::string compute = absl::GetFlag(FLAGS_cpu_compute);
      compute != "auto" && compute != "f32" && compute != "int8" && compute != "bf16") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--cpu_compute must be auto, f32, int8 or bf16, not '", compute, "'")));
  }
  if (rebalance != "off" && rebalance != "plan" && rebalance != "auto") {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--rebalance must be off, plan or auto, not '", rebalance, "'")));
  }
  if (rebalance != "off" && local) {
    return Fail(absl::InvalidArgumentError("--rebalance places experts on workers; it has no meaning with --local"));
  }
  if (rebalance == "auto" && absl::GetFlag(FLAGS_worker_admin_token_file).empty()) {
    return Fail(absl::InvalidArgumentError("--rebalance=auto needs --worker_admin_token_file (the workers' admin token)"));
  }
  std::unique_ptr<moe::server::ExpertLoad> expert_load;
  std::unique_ptr<moe::server::PlacementController> controller;
  std::unique_ptr<moe::server::MoeServiceImpl> service;
  const std::vector<moe::experts::ExpertKey> routed = moe::experts::AllExperts(config);
  const std::vector<moe::experts::ExpertKey> always_on = moe::experts::AlwaysOnExperts(config);
  std::vector<moe::experts::ExpertKey> in_router;  // experts this process computes
  if (local) in_router = routed;
  if (local || shared_on == "router") in_router.insert(in_router.end(), always_on.begin(), always_on.end());
  if (!in_router.empty()) {
    auto created = moe::experts::CreateBackend(
        **checkpoint, in_router, {.kind = absl::GetFlag(FLAGS_backend),
         .threads = absl::GetFlag(FLAGS_threads),
         .cpu_f32_compute = absl::GetFlag(FLAGS_cpu_compute) == "f32",
         .quantize = absl::GetFlag(FLAGS_quantize),
         .cpu_int8_activations = absl::GetFlag(FLAGS_cpu_compute) == "int8",
         .cpu_bf16_activations = absl::GetFlag(FLAGS_cpu_compute) == "bf16"});
    if (!created.ok()) return Fail(created.status());
    backend = std::move(*created);
    queue = std::make_unique<moe::server::ComputeQueue>(1, absl::GetFlag(FLAGS_queue_capacity));
  }
  if (local) {
    service = moe::server::MoeServiceImpl::Local(options, shared_model, backend.get(), queue.get());
  } else {
    std::shared_ptr<grpc::ChannelCredentials> worker_credentials;
    if (tls.enabled()) {
      auto made = moe::proto::ChannelTls(tls);
      if (!made.ok()) return Fail(made.status());
      worker_credentials = *made;
    }
    auto connected = moe::server::WorkerPool::Connect(
        addresses, config, absl::Seconds(absl::GetFlag(FLAGS_connect_timeout_s)),
        options.max_tokens * config.top_k * row_bytes + (1 << 20), worker_credentials);
    if (!connected.ok()) return Fail(connected.status());
    pool = std::move(*connected);
    std::vector<moe::experts::ExpertKey> needed = routed;
    if (shared_on == "workers") needed.insert(needed.end(), always_on.begin(), always_on.end());
    if (rebalance != "off") {
      expert_load = std::make_unique<moe::server::ExpertLoad>(config);
      controller = std::make_unique<moe::server::PlacementController>(
          pool.get(), config, expert_load.get(), nullptr,
          moe::server::PlacementControllerOptions{
              .apply = rebalance == "auto",
              .interval = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_rebalance_interval_s))),
              .redundant = std::max(0, absl::GetFlag(FLAGS_redundant_experts)),
              .min_gain = absl::GetFlag(FLAGS_rebalance_min_gain),
              .min_pairs = absl::GetFlag(FLAGS_rebalance_min_pairs),
              .admin_token_file = absl::GetFlag(FLAGS_worker_admin_token_file)});
      if (rebalance == "auto" && !pool->CheckCoverage(routed).ok()) {
        // Workers that started empty (or short): place what nobody hosts before serving.
        if (absl::Status placed = controller->PlaceUncovered(); !placed.ok()) return Fail(placed);
      }
    }
    if (absl::Status covered = pool->CheckCoverage(needed); !covered.ok()) {
      std::fprintf(stderr, "moe-router: refusing to serve: %s\n", covered.ToString().c_str());
      return 1;
    }
    service = moe::server::MoeServiceImpl::Networked(options, shared_model, pool.get(), backend.get(), queue.get());
  }
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<moe::server::RouterMetrics> metrics;
  moe::server::MetricsServer metrics_server;
  metrics_server.port = -1;
  moe::server::RateLimitedLog log(absl::Seconds(10));
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    metrics = std::make_unique<moe::server::RouterMetrics>(*registry, config, local ? std::vector<std::string>{} : addresses);
    auto started = moe::server::StartMetricsServer(moe::server::HostOf(absl::GetFlag(FLAGS_listen)),
                                                   absl::GetFlag(FLAGS_metrics_port), registry);
    if (!started.ok()) return Fail(started.status());
    metrics_server = std::move(*started);
    if (pool != nullptr) {
      const std::vector<int> replicas = pool->AvailableReplicas(config);
      for (size_t e = 0; e < replicas.size(); ++e) metrics->SetAvailableReplicas(static_cast<int>(e), replicas[e]);
    }
  }
  service->SetObservability(metrics.get(), &log);
  service->SetAuth(auth.get());
  if (controller != nullptr) {
    service->SetExpertLoad(expert_load.get());
    controller->SetMetrics(metrics.get());
    controller->Start();
  }
  std::unique_ptr<moe::server::WorkerDiscovery> discovery;
  if (pool != nullptr && source.dynamic()) {
    discovery = std::make_unique<moe::server::WorkerDiscovery>(
        source, pool.get(), metrics.get(), /*controller_drains=*/rebalance == "auto",
        absl::Seconds(std::max(1, absl::GetFlag(FLAGS_discovery_interval_s))),
        // A worker still loading is asked again next round rather than holding up the others.
        absl::Seconds(std::max(1, std::min(absl::GetFlag(FLAGS_discovery_interval_s), absl::GetFlag(FLAGS_connect_timeout_s)))));
    discovery->Start();
  }
  if (pool != nullptr && absl::GetFlag(FLAGS_health_check_interval_ms) > 0) {
    moe::server::WorkerPool* p = pool.get();
    moe::server::RouterMetrics* m = metrics.get();
    pool->StartHealthChecks(
        {.interval = absl::Milliseconds(absl::GetFlag(FLAGS_health_check_interval_ms)),
         .timeout = absl::Milliseconds(absl::GetFlag(FLAGS_health_check_timeout_ms)),
         .failures = absl::GetFlag(FLAGS_health_check_failures)},
        [p, m, &config, c = controller.get()](int worker, bool healthy) {
          if (!healthy && c != nullptr) c->Wake();  // its experts without another replica: place them now
          if (m == nullptr) return;
          m->SetUp(worker, p->IsUp(worker));
          const std::vector<int> replicas = p->AvailableReplicas(config);
          for (size_t e = 0; e < replicas.size(); ++e) m->SetAvailableReplicas(static_cast<int>(e), replicas[e]);
        });
  }
  int port = 0;
  std::shared_ptr<grpc::ServerCredentials> server_credentials;
  if (!tls.cert.empty() || !tls.key.empty()) {
    auto made = moe::proto::ServerTls(tls, /*require_client_cert=*/false);
    if (!made.ok()) return Fail(made.status());
    server_credentials = *made;
  }
  moe::server::OipService oip(service.get());  // the Open Inference Protocol on the same port
  auto server = moe::server::StartServer(
      {service.get(), &oip},
      {.listen = absl::GetFlag(FLAGS_listen),
       .max_message_bytes = options.max_tokens * row_bytes + (1 << 20),
       .credentials = server_credentials},
      &port);
  if (!server.ok()) return Fail(server.status());
  int health_port = -1;
  if (absl::GetFlag(FLAGS_health_port) >= 0) {
    health_port = 0;
    absl::Status mirrored = moe::server::StartHealthMirror(
        absl::StrCat(moe::server::HostOf(absl::GetFlag(FLAGS_listen)), ":", absl::GetFlag(FLAGS_health_port)),
        &health_port);
    if (!mirrored.ok()) return Fail(mirrored);
  }
  moe::server::SetReady(**server, {"moe.v1.MoeService"}, true);
  std::fprintf(stderr,
               "moe-router: serving model=%s type=%s layers=%d experts=%d routing=\"%s\" hidden=%d mode=%s "
               "shared_experts=%s workers=[%s] port=%d metrics_port=%d health_port=%d tls=%s auth=%s on_expert_unavailable=%s each_token_once=%s micro_batches=%s rebalance=%s gate=\"%s\" experts_here=\"%s\"\n",
               options.model_name.c_str(), config.model_type.c_str(), shared_model->num_layers(), config.num_experts,
               (*shared_model->layer(shared_model->num_layers() - 1))->gate().spec().DebugString().c_str(),
               config.hidden_size, local ? "local" : "networked", shared_on.c_str(),
               (absl::StrJoin(addresses, ",") +
                (source.kind == moe::server::WorkerSource::Kind::kDns    ? absl::StrCat(" from dns:///", source.host, ":", source.port)
                 : source.kind == moe::server::WorkerSource::Kind::kFile ? " from file://" + source.path
                                                                          : std::string()))
                   .c_str(),
               port, metrics_server.port, health_port,
               server_credentials == nullptr ? "off" : (local || !tls.enabled() ? "port" : "port+workers(mTLS)"),
               auth == nullptr ? "off" : "bearer", absl::GetFlag(FLAGS_on_expert_unavailable).c_str(),
               local ? "n/a" : options.each_token_once ? "on" : "off",
               local || options.micro_batching.parts == 1
                   ? "off"
                   : absl::StrCat(options.micro_batching.parts, "@", options.micro_batching.min_tokens).c_str(),
               controller == nullptr ? "off"
                                     : absl::StrCat(rebalance, "/", absl::GetFlag(FLAGS_rebalance_interval_s), "s+",
                                                    absl::GetFlag(FLAGS_redundant_experts), "redundant")
                                           .c_str(),
               blas.c_str(),
               backend == nullptr ? "none" : backend->device().c_str());
  moe::server::NotifyReadyFd(absl::GetFlag(FLAGS_ready_fd), port, metrics_server.port);
  moe::server::WaitForTerminationAndDrain(**server, absl::Seconds(absl::GetFlag(FLAGS_drain_seconds)));
  if (discovery != nullptr) discovery->Stop();
  if (controller != nullptr) controller->Stop();  // before the pool and the metrics it uses
  if (pool != nullptr) pool->StopHealthChecks();  // its callback uses `metrics`, destroyed first
  // The gRPC drain is complete; no scrape may read the metrics once they start being destroyed.
  moe::server::StopMetricsServer(metrics_server);
  std::fprintf(stderr, "moe-router: stopped\n");
  return 0;
}
