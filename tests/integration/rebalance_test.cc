// tests/integration/rebalance_test.cc
// Live placement with real processes (moe-router --rebalance, moe-expert LoadExperts/
// UnloadExperts): a checkpoint whose gate sends about half the tokens to expert 0 of each layer
// (moe-make-checkpoint --skew) on 4 workers holding 2 experts each; under steady load from 4
// clients, --rebalance=auto gives expert 0 replicas on other workers, no request fails and every
// answer stays bit-identical (f32, no batching, the router combining) to the one before the
// move; --rebalance=plan changes nothing; workers started with no experts are given them by the
// router before it serves; with --workers=file:///..., a worker added to the file under load joins
// and is given experts, and one taken out is drained (its experts moved first) and removed — no
// request fails and no answer changes; a worker killed under live placement costs at most the
// requests whose every replica was on it at that moment (UNAVAILABLE, naming it), and its experts
// are placed again on the workers left.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "client/moe_client.h"
#include "gtest/gtest.h"
#include "model/checkpoint_generator.h"
#include "server/cluster/local_cluster.h"
#include "tests/testing/cluster_env.h"
#include "tests/testing/http_get.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::testing {
namespace {

using model::DType;
using model::Tensor;

constexpr int kHidden = 64, kInter = 128, kExperts = 8, kLayers = 2, kWorkers = 4;
constexpr int64_t kTokens = 16;

double MaxRelError(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num = std::max(num, std::abs(double(got[i]) - want[i]));
    den = std::max(den, std::abs(double(want[i])));
  }
  return num / den;
}

// Clients sending Forwards in a loop, each answer compared bit for bit with `before` (the answer
// to the same input before anything moved).
class SteadyLoad {
 public:
  SteadyLoad(int port, const std::vector<std::vector<float>>& inputs, const std::vector<std::vector<float>>& before,
             int clients)
      : inputs_(inputs), before_(before) {
    for (int c = 0; c < clients; ++c) {
      threads_.emplace_back([this, port, c] {
        auto client = client::MoeClient::Connect(absl::StrCat("127.0.0.1:", port), {.deadline = absl::Seconds(30)});
        for (int i = c;; ++i) {
          {
            absl::MutexLock lock(&mu_);
            if (stop_) return;
          }
          const int k = i % static_cast<int>(inputs_.size());
          absl::StatusOr<client::ForwardResult> r =
              client->Forward(k % kLayers, Tensor::FromF32(inputs_[k], {kTokens, kHidden}));
          absl::MutexLock lock(&mu_);
          ++completed_;
          if (!r.ok()) {
            ++failed_;
            if (problems_.size() < 5) problems_.push_back(r.status().ToString());
            failures_.push_back(r.status());
          } else if (std::vector<float>(r->output.f32().begin(), r->output.f32().end()) != before_[k]) {
            ++changed_;
          }
        }
      });
    }
  }
  ~SteadyLoad() { Stop(); }
  // Blocks until `count` more requests have completed.
  void WaitMore(int count) {
    absl::MutexLock lock(&mu_);
    const int target = completed_ + count;
    auto reached = [this, target]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return completed_ >= target; };
    mu_.Await(absl::Condition(&reached));
  }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int completed() { absl::MutexLock lock(&mu_); return completed_; }
  int failed() { absl::MutexLock lock(&mu_); return failed_; }
  int changed() { absl::MutexLock lock(&mu_); return changed_; }
  std::string problems() { absl::MutexLock lock(&mu_); return absl::StrJoin(problems_, "\n"); }
  std::vector<absl::Status> failures() { absl::MutexLock lock(&mu_); return failures_; }

 private:
  const std::vector<std::vector<float>>& inputs_;
  const std::vector<std::vector<float>>& before_;
  absl::Mutex mu_;
  int completed_ ABSL_GUARDED_BY(mu_) = 0, failed_ ABSL_GUARDED_BY(mu_) = 0, changed_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> problems_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;  // last: they use everything above
};

class RebalanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new std::string(MakeTempDir("skewed"));
    model::GeneratorOptions options;
    options.config = SmallConfig(kHidden, kInter, kExperts, 2, kLayers);
    options.dtype = DType::kF32;
    options.seed = 5;
    options.skew = 10.0f;
    ASSERT_OK(model::WriteRandomCheckpoint(*checkpoint_, options));
    token_file_ = new std::string(MakeTempDir("admin") + "/token");
    std::ofstream(*token_file_) << "rebalance-token\n";
  }
  static void TearDownTestSuite() {
    delete checkpoint_;
    delete token_file_;
  }
  void TearDown() override {
    if (router_.pid > 0) server::StopChild(router_, SIGTERM);
    for (server::ChildProcess& w : workers_) {
      if (w.pid > 0) server::StopChild(w, SIGTERM);
    }
  }

  void StartWorkers(bool empty) {
    for (int i = 0; i < kWorkers; ++i) {
      std::vector<std::string> argv = {BinDir() + "/moe-expert", "--checkpoint=" + *checkpoint_,
                                       empty ? "--experts=none" : absl::StrCat("--shard=", i, "/", kWorkers),
                                       "--admin_token_file=" + *token_file_, "--listen=127.0.0.1:0",
                                       "--metrics_port=-1", "--threads=1", "--max_batch_rows=0"};
      absl::StatusOr<server::ChildProcess> w = server::SpawnServer(argv, absl::Seconds(120));
      ASSERT_OK(w.status());
      workers_.push_back(*w);
    }
  }
  server::ChildProcess StartWorker(const std::string& experts) {
    absl::StatusOr<server::ChildProcess> w = server::SpawnServer(
        {BinDir() + "/moe-expert", "--checkpoint=" + *checkpoint_, "--experts=" + experts,
         "--admin_token_file=" + *token_file_, "--listen=127.0.0.1:0", "--metrics_port=-1", "--threads=1",
         "--max_batch_rows=0"},
        absl::Seconds(120));
    EXPECT_OK(w.status());
    return w.ok() ? *w : server::ChildProcess{};
  }
  // Writes the worker list file whole, then renames it into place (as a ConfigMap update does).
  static void WriteList(const std::string& path, const std::vector<server::ChildProcess*>& workers) {
    std::vector<std::string> addresses;
    for (const server::ChildProcess* w : workers) addresses.push_back(absl::StrCat("127.0.0.1:", w->port));
    std::ofstream(path + ".tmp") << "# workers\n" << absl::StrJoin(addresses, "\n") << "\n";
    std::filesystem::rename(path + ".tmp", path);
  }
  void StartRouter(const std::string& mode, const std::string& workers_flag = "",
                   std::vector<std::string> extra = {}) {
    std::vector<std::string> addresses;
    for (const server::ChildProcess& w : workers_) addresses.push_back(absl::StrCat("127.0.0.1:", w.port));
    std::vector<std::string> argv = {
        BinDir() + "/moe-router", "--checkpoint=" + *checkpoint_,
        "--workers=" + (workers_flag.empty() ? absl::StrJoin(addresses, ",") : workers_flag), "--discovery_interval_s=1",
        "--listen=127.0.0.1:0", "--metrics_port=0", "--rebalance=" + mode, "--rebalance_interval_s=1",
        "--redundant_experts=3", "--rebalance_min_pairs=100", "--worker_admin_token_file=" + *token_file_,
        "--max_batches_in_flight=0", "--each_token_once=false"};
    argv.insert(argv.end(), extra.begin(), extra.end());  // later flags win
    absl::StatusOr<server::ChildProcess> r = server::SpawnServer(argv, absl::Seconds(120));
    ASSERT_OK(r.status());
    router_ = *r;
    client_ = client::MoeClient::Connect(absl::StrCat("127.0.0.1:", router_.port), {.deadline = absl::Seconds(30)});
  }
  // Workers listed for expert `e` of the first MoE layer by the router's GetModelInfo.
  int Replicas(int e) {
    absl::StatusOr<moe::v1::GetModelInfoResponse> info = client_->GetModelInfo();
    EXPECT_OK(info.status());
    return info.ok() ? info->placement(e).workers_size() : -1;
  }

  static std::string* checkpoint_;
  static std::string* token_file_;
  std::vector<server::ChildProcess> workers_;
  server::ChildProcess router_;
  std::unique_ptr<client::MoeClient> client_;
};
std::string* RebalanceTest::checkpoint_ = nullptr;
std::string* RebalanceTest::token_file_ = nullptr;

TEST_F(RebalanceTest, AutoReplicatesTheHotExpertWithoutAFailureOrAChangedAnswer) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers(/*empty=*/false));
  ASSERT_NO_FATAL_FAILURE(StartRouter("auto"));
  ASSERT_OK_AND_ASSIGN(auto reference, Reference::Load(*checkpoint_));
  // Inputs, and the answers before any move: the reference for bit-identity.
  std::vector<std::vector<float>> inputs, before;
  int64_t hot = 0, pairs = 0;
  for (int i = 0; i < 8; ++i) {
    inputs.push_back(RandomVector(kTokens * kHidden, 100 + i));
    ASSERT_OK_AND_ASSIGN(client::ForwardResult r,
                         client_->Forward(i % kLayers, Tensor::FromF32(inputs.back(), {kTokens, kHidden}), true));
    before.emplace_back(r.output.f32().begin(), r.output.f32().end());
    ASSERT_OK_AND_ASSIGN(const std::vector<float> want, reference->Forward(i % kLayers, inputs.back(), kTokens));
    EXPECT_LE(MaxRelError(before.back(), want), 1e-5);
    for (const std::vector<int>& token : r.experts) {
      for (int e : token) {
        hot += e == 0;
        ++pairs;
      }
    }
  }
  const double hot_tokens = static_cast<double>(hot) / static_cast<double>(8 * kTokens);
  std::printf("skew 10: expert 0 is in the top-2 of %.0f%% of the tokens (%.0f%% of pairs)\n", 100 * hot_tokens,
              100.0 * hot / pairs);
  EXPECT_GE(hot_tokens, 0.3);  // the skew is real: a uniform gate gives 25 %
  EXPECT_EQ(Replicas(0), 1);

  SteadyLoad load(router_.port, inputs, before, 4);
  // The controller rounds every second: wait (bounded) until expert 0 has more than one replica.
  int replicas = 1;
  for (int i = 0; i < 600 && replicas <= 1; ++i) {
    absl::SleepFor(absl::Milliseconds(50));  // polling the router's state, not a synchronisation
    replicas = Replicas(0);
  }
  EXPECT_GT(replicas, 1) << "the placement never gave the hot expert a replica";
  load.WaitMore(200);  // across at least one more round after the move
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.problems();
  EXPECT_EQ(load.changed(), 0) << "answers changed across the move";
  std::printf("%d requests under load, %d failed, %d changed; expert 0 on %d workers\n", load.completed(),
              load.failed(), load.changed(), replicas);
  const std::string metrics = HttpGet(router_.metrics_port, "/metrics");
  EXPECT_GE(MetricValue(metrics, "moe_placement_generation"), 1) << metrics;
  EXPECT_GT(MetricValue(metrics, "moe_placement_moves_total{result=\"ok\"}"), 0);
  EXPECT_EQ(MetricValue(metrics, "moe_placement_moves_total{result=\"failed\"}"), 0);
  EXPECT_GT(MetricValue(metrics, "moe_expert_replicas{expert=\"0\"}"), 1);
  EXPECT_GT(MetricValue(metrics, "moe_placement_imbalance_ratio{placement=\"current\"}"), 1);
  // Every expert of every layer still served, identically, after the move.
  for (size_t k = 0; k < inputs.size(); ++k) {
    ASSERT_OK_AND_ASSIGN(client::ForwardResult r,
                         client_->Forward(static_cast<int>(k % kLayers), Tensor::FromF32(inputs[k], {kTokens, kHidden})));
    EXPECT_EQ(std::vector<float>(r.output.f32().begin(), r.output.f32().end()), before[k]);
  }
}

TEST_F(RebalanceTest, PlanModeChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers(/*empty=*/false));
  ASSERT_NO_FATAL_FAILURE(StartRouter("plan"));
  const std::vector<float> x = RandomVector(kTokens * kHidden, 3);
  // Load until a round has planned (it exports the planned imbalance; bounded).
  double planned = -1;
  for (int i = 0; i < 20000 && planned <= 0; ++i) {
    ASSERT_OK(client_->Forward(i % kLayers, Tensor::FromF32(x, {kTokens, kHidden})).status());
    if (i % 50 == 49) {
      planned = MetricValue(HttpGet(router_.metrics_port, "/metrics"), "moe_placement_imbalance_ratio{placement=\"planned\"}");
    }
  }
  EXPECT_GT(planned, 0) << "no placement round planned";
  const std::string metrics = HttpGet(router_.metrics_port, "/metrics");
  EXPECT_LT(MetricValue(metrics, "moe_placement_imbalance_ratio{placement=\"planned\"}"),
            MetricValue(metrics, "moe_placement_imbalance_ratio{placement=\"current\"}"));
  EXPECT_EQ(MetricValue(metrics, "moe_placement_generation"), 0);
  for (int e = 0; e < kExperts; ++e) EXPECT_EQ(Replicas(e), 1) << e;
}

TEST_F(RebalanceTest, EmptyWorkersArePlacedBeforeServing) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers(/*empty=*/true));
  ASSERT_NO_FATAL_FAILURE(StartRouter("auto"));
  for (int e = 0; e < kExperts; ++e) EXPECT_EQ(Replicas(e), 1) << e;
  absl::StatusOr<moe::v1::GetModelInfoResponse> info = client_->GetModelInfo();
  ASSERT_OK(info.status());
  for (const moe::v1::WorkerState& w : info->workers()) EXPECT_EQ(w.num_experts(), kExperts * kLayers / kWorkers);
  ASSERT_OK_AND_ASSIGN(auto reference, Reference::Load(*checkpoint_));
  const std::vector<float> x = RandomVector(kTokens * kHidden, 4);
  for (int layer = 0; layer < kLayers; ++layer) {
    ASSERT_OK_AND_ASSIGN(client::ForwardResult r, client_->Forward(layer, Tensor::FromF32(x, {kTokens, kHidden})));
    ASSERT_OK_AND_ASSIGN(const std::vector<float> want, reference->Forward(layer, x, kTokens));
    EXPECT_LE(MaxRelError(std::vector<float>(r.output.f32().begin(), r.output.f32().end()), want), 1e-5);
  }
}

TEST_F(RebalanceTest, WorkersJoinAndLeaveUnderLoad) {
  server::ChildProcess a = StartWorker("0-3"), b = StartWorker("4-7");
  ASSERT_GT(a.pid, 0);
  ASSERT_GT(b.pid, 0);
  workers_ = {a, b};
  const std::string list = MakeTempDir("workers") + "/list";
  WriteList(list, {&a, &b});
  ASSERT_NO_FATAL_FAILURE(StartRouter("auto", "file://" + list));
  std::vector<std::vector<float>> inputs, before;
  for (int i = 0; i < 8; ++i) {
    inputs.push_back(RandomVector(kTokens * kHidden, 200 + i));
    absl::StatusOr<client::ForwardResult> first = client_->Forward(i % kLayers, Tensor::FromF32(inputs.back(), {kTokens, kHidden}));
    ASSERT_OK(first.status());
    client::ForwardResult& r = *first;
    before.emplace_back(r.output.f32().begin(), r.output.f32().end());
  }
  SteadyLoad load(router_.port, inputs, before, 3);
  // The router's view, polled (bounded) until `done` holds.
  const auto wait_for = [&](auto done, const char* what) {
    for (int i = 0; i < 1200; ++i) {
      absl::StatusOr<moe::v1::GetModelInfoResponse> info = client_->GetModelInfo();
      if (info.ok() && done(*info)) return true;
      absl::SleepFor(absl::Milliseconds(50));  // polling the router's state, not a synchronisation
    }
    ADD_FAILURE() << "timed out waiting until " << what;
    return false;
  };
  // A third worker, started empty, joins through the file and is given experts.
  server::ChildProcess c = StartWorker("none");
  ASSERT_GT(c.pid, 0);
  workers_.push_back(c);
  WriteList(list, {&a, &b, &c});
  const std::string c_address = absl::StrCat("127.0.0.1:", c.port), b_address = absl::StrCat("127.0.0.1:", b.port);
  wait_for(
      [&](const moe::v1::GetModelInfoResponse& info) {
        for (const moe::v1::WorkerState& w : info.workers()) {
          if (w.address() == c_address && w.num_experts() > 0) return true;
        }
        return false;
      },
      "the new worker hosts experts");
  // The second leaves the file: drained, then gone from the router's workers; then stopped.
  WriteList(list, {&a, &c});
  wait_for(
      [&](const moe::v1::GetModelInfoResponse& info) {
        for (const moe::v1::WorkerState& w : info.workers()) {
          if (w.address() == b_address) return false;
        }
        return true;
      },
      "the removed worker is drained");
  EXPECT_EQ(server::StopChild(workers_[1], SIGTERM), 0);
  workers_[1].pid = -1;
  load.WaitMore(100);
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.problems();
  EXPECT_EQ(load.changed(), 0);
  std::printf("%d requests while a worker joined and one left: %d failed, %d changed\n", load.completed(),
              load.failed(), load.changed());
  // Every routed expert of every layer is still placed, on the two workers left.
  ASSERT_OK_AND_ASSIGN(moe::v1::GetModelInfoResponse info, client_->GetModelInfo());
  EXPECT_EQ(info.workers_size(), 2);
  for (int e = 0; e < kExperts; ++e) EXPECT_GE(info.placement(e).workers_size(), 1) << e;
  for (size_t k = 0; k < inputs.size(); ++k) {
    ASSERT_OK_AND_ASSIGN(client::ForwardResult r,
                         client_->Forward(static_cast<int>(k % kLayers), Tensor::FromF32(inputs[k], {kTokens, kHidden})));
    EXPECT_EQ(std::vector<float>(r.output.f32().begin(), r.output.f32().end()), before[k]);
  }
}

TEST_F(RebalanceTest, AWorkerKilledUnderLivePlacement) {
  // 8 redundant replicas per layer of 8 experts (the hot ones get most); then a worker is killed:
  // requests whose every replica of an expert was on it fail (UNAVAILABLE, naming it) until the
  // next round has placed those experts on the workers left; everything else fails over.
  ASSERT_NO_FATAL_FAILURE(StartWorkers(/*empty=*/false));
  ASSERT_NO_FATAL_FAILURE(StartRouter("auto", "", {"--redundant_experts=8", "--rebalance_min_gain=0"}));
  std::vector<std::vector<float>> inputs, before;
  for (int i = 0; i < 8; ++i) {
    inputs.push_back(RandomVector(kTokens * kHidden, 300 + i));
    absl::StatusOr<client::ForwardResult> r = client_->Forward(i % kLayers, Tensor::FromF32(inputs.back(), {kTokens, kHidden}));
    ASSERT_OK(r.status());
    before.emplace_back(r->output.f32().begin(), r->output.f32().end());
  }
  SteadyLoad load(router_.port, inputs, before, 4);
  // Until the replicas are placed (bounded polling of the router's metrics).
  double generation = 0;
  for (int i = 0; i < 600 && generation < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(50));  // polling the router's state, not a synchronisation
    generation = MetricValue(HttpGet(router_.metrics_port, "/metrics"), "moe_placement_generation");
  }
  ASSERT_GE(generation, 1) << "the placement never changed";
  const std::string killed = absl::StrCat("127.0.0.1:", workers_[2].port);
  ASSERT_EQ(server::StopChild(workers_[2], SIGKILL), 128 + SIGKILL);
  workers_[2].pid = -1;
  // The killed worker's experts are placed on live workers again (bounded polling).
  bool recovered = false;
  for (int i = 0; i < 1200 && !recovered; ++i) {
    absl::SleepFor(absl::Milliseconds(50));  // polling the router's state, not a synchronisation
    absl::StatusOr<moe::v1::GetModelInfoResponse> info = client_->GetModelInfo();
    if (!info.ok()) continue;
    recovered = true;
    for (const moe::v1::ExpertPlacement& p : info->placement()) {
      const bool elsewhere = std::any_of(p.workers().begin(), p.workers().end(),
                                         [&](const std::string& w) { return w != killed; });
      const bool on_killed = std::any_of(p.workers().begin(), p.workers().end(),
                                         [&](const std::string& w) { return w == killed; });
      recovered &= elsewhere && !on_killed;
    }
  }
  EXPECT_TRUE(recovered) << "the killed worker's experts were not placed elsewhere";
  load.WaitMore(200);
  load.Stop();
  // A request fails only if every replica of one of its experts was on the killed worker at that
  // moment (a move had just taken the other one away), and then it names the worker.
  int shown = 0;
  for (const absl::Status& s : load.failures()) {
    const bool named = s.code() == absl::StatusCode::kUnavailable && s.message().find(killed) != std::string::npos;
    EXPECT_TRUE(named || shown > 3) << s;
    shown += named ? 0 : 1;
  }
  EXPECT_EQ(load.changed(), 0);
  std::printf("%d requests while a worker was killed and its experts moved: %d failed (each naming it), %d changed\n",
              load.completed(), load.failed(), load.changed());
  // Everything is served, identically, on the workers left.
  for (size_t k = 0; k < inputs.size(); ++k) {
    ASSERT_OK_AND_ASSIGN(client::ForwardResult r,
                         client_->Forward(static_cast<int>(k % kLayers), Tensor::FromF32(inputs[k], {kTokens, kHidden})));
    EXPECT_EQ(std::vector<float>(r.output.f32().begin(), r.output.f32().end()), before[k]);
  }
}

}  // namespace
}  // namespace moe::testing
