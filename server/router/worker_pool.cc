// server/router/worker_pool.cc
#include "server/router/worker_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "base/status_macros.h"
#include "proto/channel.h"

namespace moe::server {

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Connect(
    const std::vector<std::string>& addresses, const model::ModelConfig& config,
    absl::Duration timeout, int64_t max_message_bytes, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  auto pool = std::make_unique<WorkerPool>();
  pool->config_ = config;
  pool->max_message_bytes_ = max_message_bytes;
  pool->credentials_ = std::move(credentials);
  for (const std::string& address : addresses) RETURN_IF_ERROR(pool->AddWorker(address, timeout).status());
  return pool;
}

WorkerPool::WorkerPool() : workers_(std::make_unique<std::unique_ptr<Worker>[]>(kMaxWorkers)) {}

absl::StatusOr<int> WorkerPool::AddWorker(const std::string& address, absl::Duration timeout) {
  absl::MutexLock add_lock(&add_mu_);
  int index = -1;
  for (int i = 0; i < size(); ++i) {
    if (workers_[i]->address == address) index = i;
  }
  if (index >= 0 && !workers_[index]->removed.load()) {
    return absl::AlreadyExistsError(absl::StrCat("worker ", address, " is already in the pool"));
  }
  if (index < 0 && size() >= kMaxWorkers) {
    return absl::ResourceExhaustedError(absl::StrCat("the router takes at most ", kMaxWorkers, " workers"));
  }
  std::unique_ptr<Worker> fresh;
  Worker* w = index >= 0 ? workers_[index].get() : nullptr;
  if (w == nullptr) {
    fresh = std::make_unique<Worker>();
    fresh->address = address;
    fresh->channel = proto::MakeChannel(address, max_message_bytes_, proto::kWorkerKeepalive, credentials_);
    fresh->stub = moe::v1::ExpertService::NewStub(fresh->channel);
    w = fresh.get();
  }
  // The worker may still be starting (wait_for_ready) or loading its experts: it then answers
  // UNAVAILABLE, and is asked again, less and less often, until `timeout` has passed.
  const absl::Time give_up = absl::Now() + timeout;
  absl::Duration pause = absl::Milliseconds(50);
  grpc::Status s;
  moe::v1::GetWorkerInfoResponse info;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(absl::ToChronoTime(give_up));
    s = w->stub->GetWorkerInfo(&ctx, moe::v1::GetWorkerInfoRequest(), &info);
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE || absl::Now() + pause >= give_up) break;
    absl::SleepFor(pause);  // a retry's pacing, while the worker loads
    pause = std::min(pause * 2, absl::Seconds(1));
  }
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("worker ", address, " did not answer GetWorkerInfo within ",
                                               absl::FormatDuration(timeout), ": ", s.error_message()));
  }
  // (A worker that hosts no experts yet, waiting for LoadExperts, reports no hidden size.)
  if ((info.experts_size() > 0 && info.hidden_size() != config_.hidden_size) || info.model_type() != config_.model_type ||
      info.num_experts() != config_.num_experts) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", address, " serves a ", info.model_type(), " model with hidden ", info.hidden_size(), " and ",
        info.num_experts(), " experts; the router's checkpoint is ", config_.model_type, " with hidden ",
        config_.hidden_size, " and ", config_.num_experts, " experts"));
  }
  {
    absl::MutexLock info_lock(&w->info_mu);
    w->info = info;
  }
  const bool is_new = fresh != nullptr;
  if (is_new) {
    index = size();
    workers_[index] = std::move(fresh);  // a slot no reader looks at until count_ says so
  }
  w->up.store(true);
  w->healthy.store(true);
  w->missed.store(0);
  w->leaving.store(false);
  {
    absl::MutexLock lock(&placement_mu_);
    for (const moe::v1::HostedExpert& e : info.experts()) {
      std::vector<int>& replicas = placement_[experts::ExpertKey{e.layer(), e.expert()}];
      if (std::find(replicas.begin(), replicas.end(), index) == replicas.end()) {
        replicas.insert(std::upper_bound(replicas.begin(), replicas.end(), index), index);
      }
    }
    ++generation_;
  }
  w->removed.store(false, std::memory_order_release);
  if (is_new) count_.store(index + 1, std::memory_order_release);  // readers see the worker from here on
  return index;
}

void WorkerPool::SetLeaving(int i, bool leaving) { workers_[i]->leaving.store(leaving); }

void WorkerPool::Remove(int i) {
  {
    absl::MutexLock lock(&placement_mu_);
    for (auto it = placement_.begin(); it != placement_.end();) {
      it->second.erase(std::remove(it->second.begin(), it->second.end(), i), it->second.end());
      if (it->second.empty()) {
        placement_.erase(it++);
      } else {
        ++it;
      }
    }
    ++generation_;
  }
  workers_[i]->removed.store(true, std::memory_order_release);
}

int WorkerPool::PlacedOn(int i) const {
  absl::ReaderMutexLock lock(&placement_mu_);
  int n = 0;
  for (const auto& [key, replicas] : placement_) n += std::count(replicas.begin(), replicas.end(), i);
  return n;
}

std::vector<std::string> WorkerPool::ActiveAddresses() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) {
    if (!IsRemoved(i)) out.push_back(workers_[i]->address);
  }
  return out;
}

moe::v1::GetWorkerInfoResponse WorkerPool::InfoOf(Worker& w) {
  absl::MutexLock lock(&w.info_mu);
  return w.info;
}

moe::v1::GetWorkerInfoResponse WorkerPool::Info(int i) const { return InfoOf(*workers_[i]); }

void WorkerPool::SetInfo(int i, moe::v1::GetWorkerInfoResponse info) {
  absl::MutexLock lock(&workers_[i]->info_mu);
  workers_[i]->info = std::move(info);
}

WorkerPool::Placement WorkerPool::placement() const {
  absl::ReaderMutexLock lock(&placement_mu_);
  return placement_;
}

int64_t WorkerPool::generation() const {
  absl::ReaderMutexLock lock(&placement_mu_);
  return generation_;
}

void WorkerPool::AddReplicas(int i, absl::Span<const experts::ExpertKey> keys) {
  absl::MutexLock lock(&placement_mu_);
  for (const experts::ExpertKey& key : keys) {
    std::vector<int>& replicas = placement_[key];
    if (std::find(replicas.begin(), replicas.end(), i) == replicas.end()) {
      replicas.insert(std::upper_bound(replicas.begin(), replicas.end(), i), i);
    }
  }
  ++generation_;
}

void WorkerPool::RemoveReplicas(int i, absl::Span<const experts::ExpertKey> keys) {
  absl::MutexLock lock(&placement_mu_);
  for (const experts::ExpertKey& key : keys) {
    auto it = placement_.find(key);
    if (it == placement_.end()) continue;
    it->second.erase(std::remove(it->second.begin(), it->second.end(), i), it->second.end());
    if (it->second.empty()) placement_.erase(it);
  }
  ++generation_;
}

absl::Status WorkerPool::CheckCoverage(absl::Span<const experts::ExpertKey> needed) const {
  absl::ReaderMutexLock lock(&placement_mu_);
  std::vector<std::string> missing;
  for (const experts::ExpertKey& key : needed) {
    if (!placement_.contains(key)) missing.push_back(absl::StrCat(key.layer, "/", key.expert));
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      missing.size(), " (layer/expert) pairs have no worker: ", absl::StrJoin(missing, ", ")));
}

std::vector<int> WorkerPool::ReplicasOf(const experts::ExpertKey& key) const {
  absl::ReaderMutexLock lock(&placement_mu_);
  auto it = placement_.find(key);
  if (it == placement_.end()) return {};
  return it->second;
}

bool WorkerPool::IsConnectable(int i) const {
  const grpc_connectivity_state state = workers_[i]->channel->GetState(/*try_to_connect=*/true);
  return state != GRPC_CHANNEL_TRANSIENT_FAILURE && state != GRPC_CHANNEL_SHUTDOWN;
}

int WorkerPool::Best(absl::Span<const int> candidates, int exclude, bool healthy_only) const {
  // Rank: live (healthy, channel not failing), then healthy, then fewest calls in flight; the
  // candidates are ascending, so ties go to the lowest index.
  int best = -1;
  std::tuple<bool, bool, int> best_rank;
  for (int i : candidates) {
    if (i == exclude) continue;
    const bool healthy = IsHealthy(i);
    if (healthy_only && !healthy) continue;
    const std::tuple<bool, bool, int> rank{healthy && IsConnectable(i), healthy,
                                           -workers_[i]->inflight.load(std::memory_order_relaxed)};
    if (best < 0 || rank > best_rank) {
      best = i;
      best_rank = rank;
    }
  }
  return best;
}

bool WorkerPool::ReportOutcome(int i, const grpc::Status& status) {
  const bool reached = status.error_code() != grpc::StatusCode::UNAVAILABLE;
  const bool was = workers_[i]->up.exchange(reached);
  if (was == reached) return false;
  if (reached) {
    std::fprintf(stderr, "moe-router: worker=%s state=up\n", workers_[i]->address.c_str());
  } else {
    std::fprintf(stderr, "moe-router: worker=%s state=down reason=\"%s\"\n", workers_[i]->address.c_str(),
                 status.error_message().c_str());
  }
  return true;
}

std::vector<uint8_t> WorkerPool::UnavailableExperts(int layer, int num_experts) const {
  std::vector<uint8_t> down(num_experts, 0);
  for (int e = 0; e < num_experts; ++e) {
    const std::vector<int> replicas = ReplicasOf({layer, e});
    down[e] = !replicas.empty() && std::none_of(replicas.begin(), replicas.end(), [&](int w) { return IsUp(w); });
  }
  return down;
}

std::vector<int> WorkerPool::AvailableReplicas(const model::ModelConfig& config) const {
  std::vector<int> fewest(config.num_experts, -1);
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (!config.IsMoeLayer(layer)) continue;
    for (int e = 0; e < config.num_experts; ++e) {
      int up = 0;
      for (int w : ReplicasOf({layer, e})) up += workers_[w]->up.load() && IsHealthy(w) ? 1 : 0;
      fewest[e] = fewest[e] < 0 ? up : std::min(fewest[e], up);
    }
  }
  for (int& f : fewest) f = std::max(f, 0);
  return fewest;
}

int WorkerPool::Pick(const experts::ExpertKey& key) const { return Best(ReplicasOf(key), -1, false); }

int WorkerPool::PickFailover(const experts::ExpertKey& key, int exclude) const {
  return Best(ReplicasOf(key), exclude, true);
}

WorkerPool::~WorkerPool() { StopHealthChecks(); }

void WorkerPool::StopHealthChecks() {
  {
    absl::MutexLock lock(&health_mu_);
    stopping_ = true;
  }
  if (health_thread_.joinable()) health_thread_.join();
}

void WorkerPool::Track(int i, std::shared_ptr<TrackedCall> call) {
  Worker& w = *workers_[i];
  absl::MutexLock lock(&w.calls_mu);
  TrackedCall* key = call.get();
  w.calls.emplace(key, std::move(call));
}

void WorkerPool::Untrack(int i, TrackedCall* call) {
  Worker& w = *workers_[i];
  absl::MutexLock lock(&w.calls_mu);
  w.calls.erase(call);
}

void WorkerPool::SetHealth(int i, bool answered, bool serving, absl::string_view reason) {
  Worker& w = *workers_[i];
  const int missed = answered ? 0 : w.missed.fetch_add(1) + 1;
  if (answered) w.missed.store(0);
  if (!answered && missed < std::max(1, health_options_.failures)) return;  // maybe just late
  const bool healthy = answered && serving;
  const bool was = w.healthy.exchange(healthy, std::memory_order_acq_rel);
  if (healthy) w.up.store(true);  // e.g. a restarted worker: it answers again
  if (!answered) {
    // It does not answer: its calls in flight will not either. Cancel them (outside calls_mu:
    // a cancellation may run the call's reply inline, which untracks it) so that they fail over.
    std::vector<std::shared_ptr<TrackedCall>> lost;
    {
      absl::MutexLock lock(&w.calls_mu);
      for (auto& [key, call] : w.calls) lost.push_back(call);
    }
    for (auto& call : lost) {
      call->worker_lost.store(true, std::memory_order_release);
      call->context->TryCancel();
    }
  }
  if (was == healthy) return;
  if (healthy) {
    std::fprintf(stderr, "moe-router: worker=%s state=up reason=\"health check passed\"\n", w.address.c_str());
  } else {
    std::fprintf(stderr, "moe-router: worker=%s state=down reason=\"health check: %s\"\n", w.address.c_str(),
                 std::string(reason).c_str());
  }
  if (health_changed_) health_changed_(i, healthy);
}

void WorkerPool::StartHealthChecks(HealthCheckOptions options, HealthChanged changed) {
  if (health_thread_.joinable()) return;
  health_options_ = options;
  health_changed_ = std::move(changed);
  health_thread_ = std::thread([this] { CheckLoop(); });
}

void WorkerPool::CheckLoop() {
  struct Probe {
    std::unique_ptr<grpc::health::v1::Health::Stub> stub;
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> stubs;
  absl::Mutex round_mu;
  while (true) {
    const absl::Time round_start = absl::Now();
    // One Check per worker (workers added since the last round included, removed ones left out),
    // all at once, each bounded by the timeout.
    const int workers = size();
    while (static_cast<int>(stubs.size()) < workers) {
      stubs.push_back(grpc::health::v1::Health::NewStub(workers_[stubs.size()]->channel));
    }
    std::vector<std::unique_ptr<Probe>> probes;
    int pending = workers;
    for (int i = 0; i < workers; ++i) {
      auto p = std::make_unique<Probe>();
      p->context.set_deadline(absl::ToChronoTime(round_start + health_options_.timeout));
      stubs[i]->async()->Check(&p->context, &p->request, &p->response, [&, probe = p.get()](grpc::Status s) {
        absl::MutexLock lock(&round_mu);
        probe->status = std::move(s);
        --pending;
      });
      probes.push_back(std::move(p));
    }
    {
      absl::MutexLock lock(&round_mu);
      round_mu.Await(absl::Condition(+[](int* n) { return *n == 0; }, &pending));
    }
    for (size_t i = 0; i < probes.size(); ++i) {
      if (IsRemoved(static_cast<int>(i))) continue;
      const Probe& p = *probes[i];
      const bool serving = p.status.ok() && p.response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
      const std::string reason =
          p.status.ok() ? absl::StrCat("answered ", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                                                        p.response.status()))
                    : p.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                        ? absl::StrCat("no answer within ", absl::FormatDuration(health_options_.timeout))
                        : absl::StrCat("no answer (", p.status.error_code(), " ", p.status.error_message(), ")");
      SetHealth(static_cast<int>(i), p.status.ok(), serving, reason);
    }
    absl::MutexLock lock(&health_mu_);
    if (health_mu_.AwaitWithDeadline(absl::Condition(&stopping_), round_start + health_options_.interval)) return;
  }
}

}  // namespace moe::server
