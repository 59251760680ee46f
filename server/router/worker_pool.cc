// server/router/worker_pool.cc
#include "server/router/worker_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/channel.h"

namespace moe::server {

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Connect(
    const std::vector<std::string>& addresses, const experts::ModelConfig& config,
    absl::Duration timeout, int64_t max_message_bytes) {
  auto pool = std::make_unique<WorkerPool>();
  for (const std::string& address : addresses) {
    auto w = std::make_unique<Worker>();
    w->address = address;
    w->channel = proto::MakeChannel(address, max_message_bytes);
    w->stub = moe::v1::ExpertService::NewStub(w->channel);
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);  // the worker may still be starting
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
    grpc::Status s = w->stub->GetWorkerInfo(&ctx, moe::v1::GetWorkerInfoRequest(), &w->info);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat("worker ", address, " did not answer GetWorkerInfo within ",
                                                 absl::FormatDuration(timeout), ": ", s.error_message()));
    }
    if (w->info.hidden_size() != config.hidden_size || w->info.model_type() != config.model_type ||
        w->info.num_experts() != config.num_experts) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", address, " serves a ", w->info.model_type(), " model with hidden ", w->info.hidden_size(),
          " and ", w->info.num_experts(), " experts; the router's checkpoint is ", config.model_type, " with hidden ",
          config.hidden_size, " and ", config.num_experts, " experts"));
    }
    const int index = static_cast<int>(pool->workers_.size());
    for (const moe::v1::HostedExpert& e : w->info.experts()) {
      pool->placement_[experts::ExpertKey{e.layer(), e.expert()}].push_back(index);
    }
    pool->workers_.push_back(std::move(w));
  }
  return pool;
}

absl::Status WorkerPool::CheckCoverage(absl::Span<const experts::ExpertKey> needed) const {
  std::vector<std::string> missing;
  for (const experts::ExpertKey& key : needed) {
    if (!placement_.contains(key)) missing.push_back(absl::StrCat(key.layer, "/", key.expert));
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      missing.size(), " (layer/expert) pairs have no worker: ", absl::StrJoin(missing, ", ")));
}

absl::Span<const int> WorkerPool::ReplicasOf(const experts::ExpertKey& key) const {
  auto it = placement_.find(key);
  if (it == placement_.end()) return {};
  return it->second;
}

bool WorkerPool::IsConnectable(int i) const {
  const grpc_connectivity_state state = workers_[i]->channel->GetState(/*try_to_connect=*/true);
  return state != GRPC_CHANNEL_TRANSIENT_FAILURE && state != GRPC_CHANNEL_SHUTDOWN;
}

int WorkerPool::Best(absl::Span<const int> candidates, int exclude) const {
  int best = -1, best_load = 0;
  bool best_connectable = false;
  for (int i : candidates) {
    if (i == exclude) continue;
    const bool connectable = IsConnectable(i);
    const int load = workers_[i]->inflight.load(std::memory_order_relaxed);
    if (best < 0 || (connectable && !best_connectable) ||
        (connectable == best_connectable && load < best_load)) {
      best = i;
      best_load = load;
      best_connectable = connectable;
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

std::vector<int> WorkerPool::AvailableReplicas(const experts::ModelConfig& config) const {
  std::vector<int> fewest(config.num_experts, -1);
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (!config.IsMoeLayer(layer)) continue;
    for (int e = 0; e < config.num_experts; ++e) {
      int up = 0;
      for (int w : ReplicasOf({layer, e})) up += workers_[w]->up.load() ? 1 : 0;
      fewest[e] = fewest[e] < 0 ? up : std::min(fewest[e], up);
    }
  }
  for (int& f : fewest) f = std::max(f, 0);
  return fewest;
}

int WorkerPool::Pick(const experts::ExpertKey& key) const { return Best(ReplicasOf(key), -1); }

int WorkerPool::PickAlternative(absl::Span<const experts::ExpertKey> keys, int exclude) const {
  if (keys.empty()) return -1;
  std::vector<int> candidates;
  for (int i : ReplicasOf(keys[0])) {
    const bool hosts_all = std::all_of(keys.begin(), keys.end(), [&](const experts::ExpertKey& k) {
      absl::Span<const int> r = ReplicasOf(k);
      return std::find(r.begin(), r.end(), i) != r.end();
    });
    if (hosts_all) candidates.push_back(i);
  }
  return Best(candidates, exclude);
}

}  // namespace moe::server
