// server/router/placement_controller.cc
#include "server/router/placement_controller.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "proto/status_convert.h"

namespace moe::server {
namespace {

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read the admin token file ", path));
  const std::string token(absl::StripAsciiWhitespace(text.str()));
  if (token.empty()) return absl::FailedPreconditionError(absl::StrCat(path, " holds no token"));
  return token;
}

void Keys(const std::vector<experts::ExpertKey>& keys, google::protobuf::RepeatedPtrField<moe::v1::HostedExpert>* out) {
  for (const experts::ExpertKey& k : keys) {
    moe::v1::HostedExpert* e = out->Add();
    e->set_layer(k.layer);
    e->set_expert(k.expert);
  }
}

}  // namespace

PlacementController::PlacementController(WorkerPool* pool, const model::ModelConfig& config, ExpertLoad* load,
                                         RouterMetrics* metrics, PlacementControllerOptions options)
    : pool_(pool), config_(config), load_(load), metrics_(metrics), options_(std::move(options)) {
  absl::MutexLock lock(&round_mu_);
  refused_.assign(pool_->size(), false);
}

PlacementController::~PlacementController() { Stop(); }

void PlacementController::Start() {
  loop_.Start(options_.interval, [this] { RunOnce(); });
}

void PlacementController::Stop() { loop_.Stop(); }

void PlacementController::Wake() { loop_.Wake(); }

absl::Status PlacementController::PlaceUncovered() {
  absl::MutexLock round_lock(&round_mu_);
  const std::vector<int>& layers = load_->moe_layers();
  router::PlacementProblem problem;
  problem.num_workers = pool_->size();
  problem.load.assign(layers.size(), std::vector<double>(config_.num_experts, 1.0));
  problem.current.resize(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    for (int e = 0; e < config_.num_experts; ++e) problem.current[l].push_back(pool_->ReplicasOf({layers[l], e}));
  }
  for (int w = 0; w < pool_->size(); ++w) problem.usable.push_back(pool_->IsUp(w) && !pool_->IsLeaving(w));
  Round round;
  round.plan = router::PlanPlacement(problem);
  if (!round.plan.error.empty()) return absl::FailedPreconditionError(round.plan.error);
  ASSIGN_OR_RETURN(const std::string token, ReadToken(options_.admin_token_file));
  const absl::Time start = absl::Now();
  Apply(round.plan.replicas, token, round);
  ++generation_;
  std::fprintf(stderr, "moe-router: placement: experts placed on the workers before serving in %.2fs (%ld loaded, %ld failed)\n",
               absl::ToDoubleSeconds(absl::Now() - start), static_cast<long>(round.moves_ok),
               static_cast<long>(round.moves_failed));
  std::vector<experts::ExpertKey> routed;
  for (int layer : layers) {
    for (int e = 0; e < config_.num_experts; ++e) routed.push_back({layer, e});
  }
  return pool_->CheckCoverage(routed);
}

PlacementController::Round PlacementController::RunOnce() {
  absl::MutexLock round_lock(&round_mu_);
  Round round;
  std::vector<std::vector<double>> load = load_->Take();
  const std::vector<int>& layers = load_->moe_layers();
  const int workers = pool_->size();  // (more may join during the round: the next one sees them)
  refused_.resize(workers, false);
  // Workers discovery lost: drained (their experts moved off) whatever the load says; so are
  // experts stranded on workers that are down (checked below, once the placement is read).
  bool draining = false, down = false;
  for (int w = 0; w < workers; ++w) {
    if (pool_->IsRemoved(w) || pool_->PlacedOn(w) == 0) continue;
    draining |= pool_->IsLeaving(w);
    down |= !pool_->IsUp(w);
  }
  double pairs = 0;
  for (const auto& layer : load) {
    for (double p : layer) pairs += p;
  }
  if (pairs < static_cast<double>(options_.min_pairs)) {
    if (!(draining || down) || !options_.apply) {
      round.summary = absl::StrFormat("placement: %.0f pairs routed since the last round (< %d): nothing planned",
                                      pairs, options_.min_pairs);
      return round;
    }
    for (auto& layer : load) std::fill(layer.begin(), layer.end(), 1.0);  // too little to weigh: by count
  }
  router::PlacementProblem problem;
  problem.num_workers = workers;
  problem.load = load;
  problem.redundant = options_.redundant;
  problem.current.resize(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    for (int e = 0; e < config_.num_experts; ++e) problem.current[l].push_back(pool_->ReplicasOf({layers[l], e}));
  }
  // Memory: each worker's budget in experts, at the bytes an expert takes on the workers.
  std::vector<moe::v1::GetWorkerInfoResponse> infos;
  double bytes = 0, hosted = 0;
  for (int w = 0; w < workers; ++w) {
    infos.push_back(pool_->Info(w));
    bytes += static_cast<double>(infos.back().resident_bytes());
    hosted += infos.back().experts_size();
  }
  const double per_expert = hosted > 0 ? bytes / hosted : 0;
  for (int w = 0; w < workers; ++w) {
    const moe::v1::GetWorkerInfoResponse& info = infos[w];
    int64_t slots = -1;
    if (info.memory_budget_bytes() > 0 && per_expert > 0) {
      int always_on = 0;
      for (const moe::v1::HostedExpert& e : info.experts()) always_on += e.expert() >= config_.num_experts;
      slots = std::max<int64_t>(0, static_cast<int64_t>(info.memory_budget_bytes() / per_expert) - always_on);
    }
    problem.slots.push_back(slots);
    problem.usable.push_back(pool_->IsUp(w) && !refused_[w] && !pool_->IsLeaving(w));
  }
  // An expert whose every replica is on workers that cannot serve it (down, leaving) is repaired
  // whatever the load says.
  bool repair = draining;
  for (const auto& layer : problem.current) {
    for (const std::vector<int>& replicas : layer) {
      repair |= !replicas.empty() &&
                std::none_of(replicas.begin(), replicas.end(), [&](int w) { return problem.usable[w]; });
    }
  }
  round.plan = router::PlanPlacement(problem);
  round.planned = true;
  if (!round.plan.error.empty()) {
    round.summary = absl::StrCat("placement: no plan: ", round.plan.error);
    return round;
  }
  if (metrics_ != nullptr) metrics_->RecordPlacementPlan(round.plan.imbalance_before, round.plan.imbalance_after);
  const bool worth = round.plan.moves > 0 &&
                     (repair || round.plan.imbalance_after < round.plan.imbalance_before * (1.0 - options_.min_gain));
  round.summary = absl::StrFormat("placement: %.0f pairs; imbalance %.2f now, %.2f planned with %d moves%s",
                                  pairs, round.plan.imbalance_before, round.plan.imbalance_after, round.plan.moves,
                                  !options_.apply ? " (--rebalance=plan: not applied)"
                                  : !worth        ? " (not worth moving)"
                                  : repair        ? " (to place experts whose workers are down or leaving)"
                                                  : "");
  if (options_.apply && worth) {
    absl::StatusOr<std::string> token = ReadToken(options_.admin_token_file);
    if (!token.ok()) {
      absl::StrAppend(&round.summary, "; not applied: ", token.status().message());
    } else {
      const absl::Time start = absl::Now();
      Apply(round.plan.replicas, *token, round);
      round.applied = true;
      ++generation_;
      absl::StrAppendFormat(&round.summary, "; applied as generation %d in %.2fs (%d moves done, %d failed)",
                            generation_, absl::ToDoubleSeconds(absl::Now() - start), round.moves_ok,
                            round.moves_failed);
      if (metrics_ != nullptr) {
        metrics_->RecordPlacementApplied(generation_, round.moves_ok, round.moves_failed, absl::Now() - start);
      }
    }
  }
  // Leaving workers with nothing placed any more leave the pool.
  for (int w = 0; w < workers; ++w) {
    if (!pool_->IsRemoved(w) && pool_->IsLeaving(w) && pool_->PlacedOn(w) == 0) {
      pool_->Remove(w);
      absl::StrAppend(&round.summary, "; worker ", pool_->worker(w).address, " drained and removed");
    }
  }
  if (metrics_ != nullptr) {
    for (int e = 0; e < config_.num_experts; ++e) {
      double sum = 0;
      for (int layer : layers) sum += static_cast<double>(pool_->ReplicasOf({layer, e}).size());
      metrics_->SetReplicas(e, layers.empty() ? 0 : sum / static_cast<double>(layers.size()));
    }
    const std::vector<int> available = pool_->AvailableReplicas(config_);
    for (size_t e = 0; e < available.size(); ++e) metrics_->SetAvailableReplicas(static_cast<int>(e), available[e]);
  }
  std::fprintf(stderr, "moe-router: %s\n", round.summary.c_str());
  return round;
}

void PlacementController::Apply(const std::vector<std::vector<std::vector<int>>>& plan, const std::string& token,
                                Round& round) {
  const std::vector<int>& layers = load_->moe_layers();
  std::vector<std::vector<experts::ExpertKey>> adds(pool_->size()), removes(pool_->size());
  for (size_t l = 0; l < plan.size(); ++l) {
    for (int e = 0; e < static_cast<int>(plan[l].size()); ++e) {
      const experts::ExpertKey key{layers[l], e};
      const std::vector<int> now = pool_->ReplicasOf(key);
      for (int w : plan[l][e]) {
        if (std::find(now.begin(), now.end(), w) == now.end()) adds[w].push_back(key);
      }
      for (int w : now) {
        if (std::find(plan[l][e].begin(), plan[l][e].end(), w) == plan[l][e].end()) removes[w].push_back(key);
      }
    }
  }
  const auto call = [&](int w, auto method, const auto& request, moe::v1::PlacementChangeResponse* response) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
    return (pool_->worker(w).stub.get()->*method)(&context, request, response);
  };
  // 1. New replicas: loaded, then given traffic.
  for (int w = 0; w < pool_->size(); ++w) {
    if (adds[w].empty()) continue;
    moe::v1::LoadExpertsRequest request;
    Keys(adds[w], request.mutable_experts());
    moe::v1::PlacementChangeResponse response;
    const grpc::Status s = call(w, &moe::v1::ExpertService::Stub::LoadExperts, request, &response);
    if (s.ok()) {
      pool_->AddReplicas(w, adds[w]);
      pool_->SetInfo(w, response.info());
      round.moves_ok += static_cast<int64_t>(adds[w].size());
    } else {
      if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) refused_[w] = true;  // live placement off
      round.moves_failed += static_cast<int64_t>(adds[w].size());
      std::fprintf(stderr, "moe-router: placement: worker=%s LoadExperts of %zu experts failed: %d %s\n",
                   pool_->worker(w).address.c_str(), adds[w].size(), static_cast<int>(s.error_code()),
                   s.error_message().c_str());
    }
  }
  // 2. Replicas no longer placed: out of the placement first (no new calls), then unloaded. Never
  // an expert's last live replica.
  for (int w = 0; w < pool_->size(); ++w) {
    std::vector<experts::ExpertKey> keys;
    for (const experts::ExpertKey& key : removes[w]) {
      const std::vector<int> replicas = pool_->ReplicasOf(key);
      const bool other = std::any_of(replicas.begin(), replicas.end(), [&](int r) { return r != w && pool_->IsUp(r); });
      if (other) {
        keys.push_back(key);
      } else {
        ++round.moves_failed;
      }
    }
    if (keys.empty()) continue;
    pool_->RemoveReplicas(w, keys);
    if (!pool_->IsUp(w)) {  // a worker that is down keeps its copy; it is just no longer placed
      round.moves_ok += static_cast<int64_t>(keys.size());
      continue;
    }
    moe::v1::UnloadExpertsRequest request;
    Keys(keys, request.mutable_experts());
    moe::v1::PlacementChangeResponse response;
    const grpc::Status s = call(w, &moe::v1::ExpertService::Stub::UnloadExperts, request, &response);
    if (s.ok()) {
      pool_->SetInfo(w, response.info());
      round.moves_ok += static_cast<int64_t>(keys.size());
    } else {
      round.moves_failed += static_cast<int64_t>(keys.size());
      std::fprintf(stderr, "moe-router: placement: worker=%s UnloadExperts of %zu experts failed: %d %s\n",
                   pool_->worker(w).address.c_str(), keys.size(), static_cast<int>(s.error_code()),
                   s.error_message().c_str());
    }
  }
}

}  // namespace moe::server
