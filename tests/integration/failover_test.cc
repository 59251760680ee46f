// tests/integration/failover_test.cc
// Failover with real processes under load (#13): every expert on two workers in layouts where no
// worker holds all of another's experts, one worker killed (-9) or stopped (SIGSTOP) while four
// clients keep sending — no request may fail; a stopped worker without a replica costs only the
// requests that need its experts, and those fail UNAVAILABLE naming it (found by the router's
// health checks, not by waiting out the 20 s deadline); after SIGCONT it serves again; a
// DEADLINE_EXCEEDED from the router names the worker and experts that did not answer; a slow or
// partitioned link (a fault proxy: no netem here) is marked down and its replicas take over.
// Counts are asserted, never timings; "under load" is observed (requests completed), not slept for.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/fixed_array.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "client/moe_client.h"
#include "gtest/gtest.h"
#include "proto/tensor_codec.h"
#include "router/degraded.h"
#include "server/cluster/local_cluster.h"
#include "server/common/server_runtime.h"
#include "tests/testing/cluster_env.h"
#include "tests/testing/held_expert_service.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tcp_fault_proxy.h"

namespace moe::testing {
namespace {

using model::DType;
using model::Tensor;

constexpr int kHidden = 64;
constexpr int64_t kTokens = 16;

server::ChildProcess StartWorker(const std::string& checkpoint, const std::string& experts) {
  absl::StatusOr<server::ChildProcess> w = server::SpawnServer(
      {BinDir() + "/moe-expert", "--checkpoint=" + checkpoint, "--experts=" + experts, "--listen=127.0.0.1:0",
       "--metrics_port=-1", "--threads=1"},
      absl::Seconds(120));
  EXPECT_OK(w.status());
  return w.ok() ? *w : server::ChildProcess{};
}

server::ChildProcess StartRouter(const std::string& checkpoint, const std::vector<server::ChildProcess>& workers,
                                 std::vector<std::string> flags = {}) {
  std::vector<std::string> addresses;
  for (const server::ChildProcess& w : workers) addresses.push_back(absl::StrCat("127.0.0.1:", w.port));
  std::vector<std::string> argv = {BinDir() + "/moe-router", "--checkpoint=" + checkpoint,
                                   "--workers=" + absl::StrJoin(addresses, ","), "--listen=127.0.0.1:0",
                                   "--metrics_port=-1"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<server::ChildProcess> r = server::SpawnServer(argv, absl::Seconds(120));
  EXPECT_OK(r.status());
  return r.ok() ? *r : server::ChildProcess{};
}

// Clients sending Forwards in a loop, each checked against the in-process reference.
class Load {
 public:
  // `inputs[i]` ([kTokens, H]) goes to layer i % 2; `expected[i]` is its reference output.
  Load(const std::string& router, std::vector<std::vector<float>> inputs, std::vector<std::vector<float>> expected,
       int clients)
      : inputs_(std::move(inputs)), expected_(std::move(expected)) {
    client_ = client::MoeClient::Connect(router, {.deadline = absl::Seconds(20)});
    for (int c = 0; c < clients; ++c) threads_.emplace_back([this, c] { Run(c); });
  }
  ~Load() { Stop(); }

  // Blocks until `count` requests have completed (succeeded or failed) since the start.
  void WaitForCompleted(int count) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, count]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return completed_ >= count; };
    mu_.Await(absl::Condition(&reached));
  }
  int completed() {
    absl::MutexLock lock(&mu_);
    return completed_;
  }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // Failures (wrong answers included), with the first few messages.
  int failed() {
    absl::MutexLock lock(&mu_);
    return failed_;
  }
  std::string failures() {
    absl::MutexLock lock(&mu_);
    return absl::StrJoin(messages_, "\n");
  }

 private:
  void Run(int c) {
    for (size_t i = c;; i += 7) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      const size_t k = i % inputs_.size();
      absl::StatusOr<client::ForwardResult> r =
          client_->Forward(static_cast<int>(k % 2), Tensor::FromF32(inputs_[k], {kTokens, kHidden}));
      std::string problem;
      if (!r.ok()) {
        problem = r.status().ToString();
      } else {
        const double err =
            MaxRelError(std::vector<float>(r->output.f32().begin(), r->output.f32().end()), expected_[k]);
        if (!(err <= 1e-5)) problem = absl::StrCat("wrong answer: max relative error ", err);
      }
      absl::MutexLock lock(&mu_);
      ++completed_;
      if (!problem.empty()) {
        ++failed_;
        if (messages_.size() < 5) messages_.push_back(problem);
      }
    }
  }

  const std::vector<std::vector<float>> inputs_;
  const std::vector<std::vector<float>> expected_;
  std::unique_ptr<client::MoeClient> client_;
  absl::Mutex mu_;
  int completed_ ABSL_GUARDED_BY(mu_) = 0;
  int failed_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> messages_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;  // last: they use everything above
};

// Polls the router's GetModelInfo until worker `index` reads `up` (bounded; a condition, not a
// guess at how long it takes).
bool WaitForWorkerState(client::MoeClient& client, int index, bool up) {
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<moe::v1::GetModelInfoResponse> info = client.GetModelInfo();
    if (info.ok() && info->workers_size() > index && info->workers(index).up() == up) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

// SIGSTOP is delivered asynchronously: until every thread of the process has stopped, one still
// running may answer one more call. Polls /proc/<pid>/task/*/stat until each reads T (bounded).
bool WaitUntilStopped(pid_t pid) {
  for (int i = 0; i < 1000; ++i) {
    bool all = true;
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const size_t close = line.rfind(')');  // "tid (comm) STATE ...": comm may hold anything
      if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'T') all = false;
    }
    if (!error && all) return true;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return false;
}

// A worker in this process that holds every Forward until released (all experts), SERVING.
struct HeldWorker {
  static absl::StatusOr<std::unique_ptr<HeldWorker>> Start(const std::string& checkpoint) {
    auto w = std::make_unique<HeldWorker>();
    ASSIGN_OR_RETURN(auto ckpt, model::Checkpoint::Open(checkpoint));
    ASSIGN_OR_RETURN(auto backend, experts::CpuExpertBackend::Create(*ckpt, experts::AllExperts(ckpt->config()), {}));
    w->service = std::make_unique<HeldExpertService>(std::move(backend), ckpt->config());
    ASSIGN_OR_RETURN(w->server, server::StartServer({w->service.get()}, {.listen = "127.0.0.1:0"}, &w->port));
    server::SetReady(*w->server, {"moe.v1.ExpertService"}, true);
    return w;
  }
  ~HeldWorker() {
    service->ReleaseAll();
    server->Shutdown();
  }
  std::unique_ptr<HeldExpertService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

class FailoverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new std::string(WriteCheckpoint(SmallConfig(kHidden, 48, 8, 2, 2), DType::kF32, 71));
    auto ref = Reference::Load(*checkpoint_);
    ASSERT_OK(ref.status());
    inputs_ = new std::vector<std::vector<float>>();
    expected_ = new std::vector<std::vector<float>>();
    for (int i = 0; i < 12; ++i) {
      inputs_->push_back(RandomVector(kTokens * kHidden, 500 + i));
      auto out = (*ref)->Forward(i % 2, inputs_->back(), kTokens);
      ASSERT_OK(out.status());
      expected_->push_back(*out);
    }
  }
  static void TearDownTestSuite() {
    delete checkpoint_;
    delete inputs_;
    delete expected_;
  }
  static std::string* checkpoint_;
  static std::vector<std::vector<float>>* inputs_;
  static std::vector<std::vector<float>>* expected_;
};
std::string* FailoverTest::checkpoint_ = nullptr;
std::vector<std::vector<float>>* FailoverTest::inputs_ = nullptr;
std::vector<std::vector<float>>* FailoverTest::expected_ = nullptr;

// Each expert on two workers, spread so that no worker holds every expert of another: a failed
// call's groups must go to several workers.
const std::vector<std::string> kSplitLayout = {"0-5", "0-1,4-7", "2-3,6-7"};

// Router + the split layout under 4 clients; kill -9 of worker `victim` mid-load; the number of
// failed (or wrong) requests among the 200 after the kill.
void KillOneOfSplitReplicasUnderLoad(const std::string& checkpoint, const std::vector<std::vector<float>>& inputs,
                                     const std::vector<std::vector<float>>& expected, int victim,
                                     std::vector<std::string> router_flags) {
  std::vector<server::ChildProcess> workers;
  for (const std::string& experts : kSplitLayout) workers.push_back(StartWorker(checkpoint, experts));
  server::ChildProcess router = StartRouter(checkpoint, workers, std::move(router_flags));
  ASSERT_GT(router.pid, 0);
  {
    Load load(absl::StrCat("127.0.0.1:", router.port), inputs, expected, 4);
    load.WaitForCompleted(40);
    server::StopChild(workers[victim], SIGKILL);  // a crash, with calls in flight
    const int at_kill = load.completed();
    load.WaitForCompleted(at_kill + 200);
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << "victim " << kSplitLayout[victim] << ":\n" << load.failures();
  }
  server::StopChild(router, SIGKILL);
  for (server::ChildProcess& w : workers) {
    if (w.pid > 0) server::StopChild(w, SIGKILL);
  }
}

TEST_F(FailoverTest, KillingAnyWorkerOfSplitReplicasUnderLoadFailsNoRequest) {
  for (int victim = 0; victim < 3; ++victim) {
    KillOneOfSplitReplicasUnderLoad(*checkpoint_, *inputs_, *expected_, victim, {});
  }
}

// The same with every Forward cut into micro-batches (--micro_batches): each part fails over on
// its own, and the joined answers stay exact.
TEST_F(FailoverTest, MicroBatchedDispatchesFailOverToo) {
  KillOneOfSplitReplicasUnderLoad(*checkpoint_, *inputs_, *expected_, 1,
                                  {"--micro_batches=3", "--micro_batch_min_tokens=8"});
}

// A worker told to stop (SIGTERM: NOT_SERVING, then it drains) under load: the router stops
// sending to it, what it had in flight finishes or fails over, and no request fails; the worker
// exits 0.
TEST_F(FailoverTest, ADrainingWorkerUnderLoadFailsNoRequest) {
  std::vector<server::ChildProcess> workers;
  for (const std::string& experts : kSplitLayout) workers.push_back(StartWorker(*checkpoint_, experts));
  server::ChildProcess router = StartRouter(*checkpoint_, workers);
  ASSERT_GT(router.pid, 0);
  {
    Load load(absl::StrCat("127.0.0.1:", router.port), *inputs_, *expected_, 4);
    load.WaitForCompleted(40);
    EXPECT_EQ(server::StopChild(workers[1], SIGTERM), 0);  // returns once it has drained and exited
    const int at_exit = load.completed();
    load.WaitForCompleted(at_exit + 200);
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.failures();
  }
  server::StopChild(router, SIGKILL);
  for (server::ChildProcess& w : workers) server::StopChild(w, SIGKILL);
}

TEST_F(FailoverTest, AStoppedWorkerIsMarkedDownItsReplicasTakeOverAndItRejoinsAfterSigcont) {
  std::vector<server::ChildProcess> workers;
  for (const std::string& experts : kSplitLayout) workers.push_back(StartWorker(*checkpoint_, experts));
  server::ChildProcess router = StartRouter(*checkpoint_, workers);
  ASSERT_GT(router.pid, 0);
  const std::string address = absl::StrCat("127.0.0.1:", router.port);
  auto watcher = client::MoeClient::Connect(address);
  {
    Load load(address, *inputs_, *expected_, 4);
    load.WaitForCompleted(40);
    ::kill(workers[0].pid, SIGSTOP);  // hung: connection open, nothing answers
    EXPECT_TRUE(WaitForWorkerState(*watcher, 0, /*up=*/false));
    const int at_down = load.completed();
    load.WaitForCompleted(at_down + 200);
    ::kill(workers[0].pid, SIGCONT);
    EXPECT_TRUE(WaitForWorkerState(*watcher, 0, /*up=*/true));
    const int at_up = load.completed();
    load.WaitForCompleted(at_up + 100);
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.failures();
  }
  server::StopChild(router, SIGKILL);
  for (server::ChildProcess& w : workers) server::StopChild(w, SIGKILL);
}

// A worker's link goes bad under load (a TcpFaultProxy between the router and worker 0; every
// expert has a replica): a delay the health check tolerates, a delay beyond its timeout, healed,
// then a partition (every byte dropped, connection open), healed. The slow and the partitioned
// link are marked down, their calls fail over, the worker rejoins each time — 0 failed requests.
TEST_F(FailoverTest, ASlowOrPartitionedLinkIsMarkedDownItsReplicasTakeOverAndItRejoins) {
  std::vector<server::ChildProcess> workers;
  for (const std::string& experts : kSplitLayout) workers.push_back(StartWorker(*checkpoint_, experts));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TcpFaultProxy> link, TcpFaultProxy::Start(workers[0].port));
  std::vector<server::ChildProcess> seen = workers;  // what the router is told: worker 0 behind the proxy
  seen[0] = server::ChildProcess{.port = link->port()};
  server::ChildProcess router = StartRouter(*checkpoint_, seen);
  ASSERT_GT(router.pid, 0);
  const std::string address = absl::StrCat("127.0.0.1:", router.port);
  auto watcher = client::MoeClient::Connect(address);
  {
    Load load(address, *inputs_, *expected_, 4);
    load.WaitForCompleted(40);
    link->SetDelay(absl::Milliseconds(20));  // each way; the health check allows 500 ms
    load.WaitForCompleted(load.completed() + 60);
    link->SetDelay(absl::Seconds(2));  // beyond the health check's timeout
    EXPECT_TRUE(WaitForWorkerState(*watcher, 0, /*up=*/false));
    load.WaitForCompleted(load.completed() + 100);
    link->SetDelay(absl::ZeroDuration());
    EXPECT_TRUE(WaitForWorkerState(*watcher, 0, /*up=*/true));
    load.WaitForCompleted(load.completed() + 60);
    link->SetBlackhole(true);
    EXPECT_TRUE(WaitForWorkerState(*watcher, 0, /*up=*/false));
    load.WaitForCompleted(load.completed() + 100);
    link->SetBlackhole(false);  // the broken connection is dropped; the router connects again
    EXPECT_TRUE(WaitForWorkerState(*watcher, 0, /*up=*/true));
    load.WaitForCompleted(load.completed() + 60);
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.failures();
  }
  EXPECT_GT(link->bytes_dropped(), 0);
  EXPECT_GE(link->connections_accepted(), 2) << "after the partition the router must have connected again";
  server::StopChild(router, SIGKILL);
  for (server::ChildProcess& w : workers) server::StopChild(w, SIGKILL);
}

// Tokens of `inputs` whose experts in layer 0 avoid `missing`, and a token that needs one of them.
struct Split {
  std::vector<float> avoid;  // [n, H]
  std::vector<float> needs;  // [1, H]
  std::vector<float> avoid_expected;
};
Split SplitTokens(const std::string& checkpoint, const std::set<int>& missing) {
  auto ref = Reference::Load(checkpoint);
  EXPECT_OK(ref.status());
  const int64_t n = 200;
  const std::vector<float> x = RandomVector(n * kHidden, 9);
  router::Routing routing;
  EXPECT_OK((*ref)->Forward(0, x, n, &routing).status());
  Split split;
  for (int64_t t = 0; t < n; ++t) {
    bool needs = false;
    for (int e : routing.ExpertsOf(t)) needs = needs || missing.count(e) > 0;
    std::vector<float>& dst = needs ? split.needs : split.avoid;
    if (needs && !dst.empty()) continue;
    dst.insert(dst.end(), x.begin() + t * kHidden, x.begin() + (t + 1) * kHidden);
  }
  auto expected = (*ref)->Forward(0, split.avoid, static_cast<int64_t>(split.avoid.size() / kHidden));
  EXPECT_OK(expected.status());
  if (expected.ok()) split.avoid_expected = *expected;
  return split;
}

TEST_F(FailoverTest, AStoppedWorkerWithoutReplicaCostsOnlyTheRequestsThatNeedIt) {
  std::vector<server::ChildProcess> workers;
  for (const std::string& experts : {"0-1", "2-3", "4-5", "6-7"}) workers.push_back(StartWorker(*checkpoint_, experts));
  server::ChildProcess router = StartRouter(*checkpoint_, workers);
  ASSERT_GT(router.pid, 0);
  const std::string stopped = absl::StrCat("127.0.0.1:", workers[3].port);
  const Split split = SplitTokens(*checkpoint_, {6, 7});
  ASSERT_FALSE(split.avoid.empty());
  ASSERT_FALSE(split.needs.empty());
  const int64_t n = static_cast<int64_t>(split.avoid.size() / kHidden);
  auto client = client::MoeClient::Connect(absl::StrCat("127.0.0.1:", router.port), {.deadline = absl::Seconds(20)});
  ASSERT_OK(client->Forward(0, Tensor::FromF32(split.needs, {1, kHidden})).status());  // all up

  ::kill(workers[3].pid, SIGSTOP);
  ASSERT_TRUE(WaitUntilStopped(workers[3].pid));  // not one answer more (a fresh clone's run got one)
  // Eight clients, each alternating a request that avoids experts 6-7 and one that needs them;
  // the router batches them together. 20 s deadlines: a request that needs the stopped worker
  // must fail because the health checks found it down, not by waiting out its deadline.
  constexpr int kClients = 8, kRounds = 6;
  std::vector<absl::StatusOr<client::ForwardResult>> got(kClients * kRounds, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      for (int r = 0; r < kRounds; ++r) {
        const int i = r * kClients + c;
        got[i] = i % 2 == 0 ? client->Forward(0, Tensor::FromF32(split.avoid, {n, kHidden}))
                            : client->Forward(0, Tensor::FromF32(split.needs, {1, kHidden}));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < got.size(); ++i) {
    if (i % 2 == 1) {
      EXPECT_THAT(got[i], StatusIs(absl::StatusCode::kUnavailable, stopped)) << "request " << i;
      continue;
    }
    ASSERT_OK(got[i].status()) << "request " << i << " does not need the stopped worker";
    EXPECT_LE(MaxRelError(std::vector<float>(got[i]->output.f32().begin(), got[i]->output.f32().end()),
                          split.avoid_expected),
              1e-5);
  }
  ::kill(workers[3].pid, SIGCONT);
  EXPECT_TRUE(WaitForWorkerState(*client, 3, /*up=*/true));
  EXPECT_OK(client->Forward(0, Tensor::FromF32(split.needs, {1, kHidden})).status());
  server::StopChild(router, SIGKILL);
  for (server::ChildProcess& w : workers) server::StopChild(w, SIGKILL);
}

// --on_expert_unavailable=reroute|drop with a killed worker (experts 6-7, no replica): requests
// that need them are answered, marked degraded (the response flag, and per token the experts it
// lost), and equal the in-process layer on the routing the mode implies: the gate with 6-7 out of
// reach (reroute) or the normal routing without their pairs (drop).
TEST_F(FailoverTest, DegradedModeReroutesOrDropsTheExpertsOfADeadWorker) {
  ASSERT_OK_AND_ASSIGN(auto ref, Reference::Load(*checkpoint_));
  const int64_t n = 24;
  const std::vector<float> x = RandomVector(n * kHidden, 77);
  for (const std::string mode : {"reroute", "drop"}) {
    std::vector<server::ChildProcess> workers;
    for (const std::string& experts : {"0-1", "2-3", "4-5", "6-7"}) workers.push_back(StartWorker(*checkpoint_, experts));
    server::ChildProcess router = StartRouter(*checkpoint_, workers, {"--on_expert_unavailable=" + mode});
    ASSERT_GT(router.pid, 0);
    server::StopChild(workers[3], SIGKILL);
    auto client = client::MoeClient::Connect(absl::StrCat("127.0.0.1:", router.port), {.deadline = absl::Seconds(20)});
    moe::v1::ForwardRequest request;
    request.set_layer(0);
    request.set_return_routing(true);
    proto::EncodeTensor(Tensor::FromF32(x, {n, kHidden}), request.mutable_hidden_states());
    for (int attempt = 0; attempt < 2; ++attempt) {  // the first finds the worker dead, the second knows
      moe::v1::ForwardResponse response;
      ASSERT_OK(client->ForwardRaw(request, &response)) << mode << " attempt " << attempt;
      EXPECT_TRUE(response.degraded()) << mode;
      ASSERT_OK_AND_ASSIGN(const router::Gate* gate, ref->GateOf(0));
      absl::FixedArray<bool> down(8, false);
      down[6] = down[7] = true;
      ASSERT_OK_AND_ASSIGN(router::Routing routing, gate->Route(x, n));
      const std::vector<std::vector<int>> lost = router::ExcludedChoices(routing, down);
      if (mode == "reroute") {
        ASSERT_OK_AND_ASSIGN(routing, gate->RouteExcluding(x, n, down));
      } else {
        router::DropExperts(down, routing);
      }
      int affected = 0;
      ASSERT_EQ(response.routing_size(), n);
      for (int64_t t = 0; t < n; ++t) {
        const moe::v1::TokenRouting& r = response.routing(static_cast<int>(t));
        EXPECT_EQ(std::vector<int>(r.unavailable_experts().begin(), r.unavailable_experts().end()), lost[t]);
        EXPECT_EQ(std::vector<int>(r.experts().begin(), r.experts().end()),
                  std::vector<int>(routing.ExpertsOf(t).begin(), routing.ExpertsOf(t).end()))
            << mode << " token " << t;
        affected += lost[t].empty() ? 0 : 1;
      }
      EXPECT_GT(affected, 0) << "the input must need experts 6-7";
      ASSERT_OK_AND_ASSIGN(std::vector<float> expected, ref->ForwardRouted(0, x, n, routing));
      absl::StatusOr<model::Tensor> got = proto::ViewTensor(response.output(), "output");
      ASSERT_OK(got.status());
      EXPECT_LE(MaxRelError(std::vector<float>(got->f32().begin(), got->f32().end()), expected), 1e-5) << mode;
    }
    server::StopChild(router, SIGKILL);
    for (server::ChildProcess& w : workers) server::StopChild(w, SIGKILL);
  }
}

// Admission control: with --max_inflight=3 and three Forwards held at the worker, a fourth is
// refused at once with RESOURCE_EXHAUSTED (not queued until a deadline); the held ones finish
// normally once released, and the router then admits again.
TEST_F(FailoverTest, BeyondMaxInflightAForwardIsRefusedAtOnceNotQueued) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldWorker> worker, HeldWorker::Start(*checkpoint_));
  HeldExpertService& held = *worker->service;
  const int port = worker->port;
  server::ChildProcess router =
      StartRouter(*checkpoint_, {server::ChildProcess{.port = port}}, {"--max_inflight=3", "--max_batches_in_flight=0"});
  ASSERT_GT(router.pid, 0);
  auto client = client::MoeClient::Connect(absl::StrCat("127.0.0.1:", router.port), {.deadline = absl::Seconds(20)});
  const std::vector<float> x = RandomVector(4 * kHidden, 3);
  absl::Mutex mu;
  int answered = 0, ok = 0;
  for (int i = 0; i < 3; ++i) {
    client->ForwardAsync(0, Tensor::FromF32(x, {4, kHidden}), false, [&](absl::StatusOr<client::ForwardResult> r) {
      absl::MutexLock lock(&mu);
      ++answered;
      ok += r.ok() ? 1 : 0;
    });
  }
  held.WaitForArrivals(3);  // all three admitted and at the worker
  EXPECT_THAT(client->Forward(0, Tensor::FromF32(x, {4, kHidden})),
              StatusIs(absl::StatusCode::kResourceExhausted, "router overloaded: 3 Forwards in flight"));
  EXPECT_OK(client->GetModelInfo().status());  // metadata is not admission-controlled
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(answered, 0) << "the refusal came while the admitted ones were still held";
  }
  held.ReleaseAll();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* n) { return *n == 3; }, &answered));
    EXPECT_EQ(ok, 3);
  }
  EXPECT_OK(client->Forward(0, Tensor::FromF32(x, {4, kHidden})).status());
  server::StopChild(router, SIGKILL);
}

// The router's own deadline (--deadline_ms) runs out on a worker that holds the call (it still
// answers health checks): the caller's DEADLINE_EXCEEDED names the worker and the experts.
TEST_F(FailoverTest, DeadlineExceededNamesTheWorkerAndExpertsThatDidNotAnswer) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HeldWorker> worker, HeldWorker::Start(*checkpoint_));
  HeldExpertService& held = *worker->service;
  const int port = worker->port;
  server::ChildProcess fake{.port = port};
  server::ChildProcess router = StartRouter(*checkpoint_, {fake}, {"--deadline_ms=300"});
  ASSERT_GT(router.pid, 0);
  auto client = client::MoeClient::Connect(absl::StrCat("127.0.0.1:", router.port), {.deadline = absl::Seconds(20)});
  const absl::StatusOr<client::ForwardResult> r =
      client->Forward(0, Tensor::FromF32(RandomVector(4 * kHidden, 2), {4, kHidden}));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDeadlineExceeded, absl::StrCat("of layer 0 on worker 127.0.0.1:", port)));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDeadlineExceeded, "expert"));
  held.ReleaseAll();
  server::StopChild(router, SIGKILL);
}

}  // namespace
}  // namespace moe::testing
