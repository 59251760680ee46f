// tests/server/router/worker_discovery_test.cc
// The --workers forms: a list, dns:///NAME:PORT, file:///PATH — parsed, refused when malformed,
// and resolved (a file with comments and both separators; localhost through the resolver).
#include "server/router/worker_discovery.h"

#include <fstream>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

using ::moe::testing::StatusIs;

TEST(WorkerDiscoveryTest, ParsesEachForm) {
  ASSERT_OK_AND_ASSIGN(WorkerSource list, ParseWorkerSource({"a:1", "b:2"}));
  EXPECT_EQ(list.kind, WorkerSource::Kind::kList);
  EXPECT_FALSE(list.dynamic());
  ASSERT_OK_AND_ASSIGN(WorkerSource given, ParseWorkerSource({"b:2", "a:1", "b:2"}));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> in_order, ResolveWorkers(given));
  EXPECT_EQ(in_order, (std::vector<std::string>{"b:2", "a:1"}));  // worker indices follow the flag
  ASSERT_OK_AND_ASSIGN(WorkerSource dns, ParseWorkerSource({"dns:///moe-expert.ns.svc:50061"}));
  EXPECT_EQ(dns.kind, WorkerSource::Kind::kDns);
  EXPECT_EQ(dns.host, "moe-expert.ns.svc");
  EXPECT_EQ(dns.port, 50061);
  ASSERT_OK_AND_ASSIGN(WorkerSource file, ParseWorkerSource({"file:///etc/moe/workers"}));
  EXPECT_EQ(file.kind, WorkerSource::Kind::kFile);
  EXPECT_EQ(file.path, "/etc/moe/workers");
}

TEST(WorkerDiscoveryTest, RefusesMalformedSources) {
  EXPECT_THAT(ParseWorkerSource({}), StatusIs(absl::StatusCode::kInvalidArgument, "names no worker"));
  for (const char* bad : {"dns:///name", "dns:///:50061", "dns:///name:0", "dns:///name:x", "dns://name:1",
                          "file://relative", "file:///"}) {
    EXPECT_THAT(ParseWorkerSource({bad}), StatusIs(absl::StatusCode::kInvalidArgument, "--workers")) << bad;
  }
  EXPECT_THAT(ParseWorkerSource({"a:1", "dns:///b:2"}), StatusIs(absl::StatusCode::kInvalidArgument, "stands alone"));
}

TEST(WorkerDiscoveryTest, ResolvesFilesAndNames) {
  const std::string path = testing::MakeTempDir("discovery") + "/workers";
  std::ofstream(path) << "# the workers\nw2:50061, w1:50061\n\n  w3:50061 # the third\nw1:50061\n";
  ASSERT_OK_AND_ASSIGN(WorkerSource file, ParseWorkerSource({"file://" + path}));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> listed, ResolveWorkers(file));
  EXPECT_EQ(listed, (std::vector<std::string>{"w1:50061", "w2:50061", "w3:50061"}));
  ASSERT_OK_AND_ASSIGN(WorkerSource gone, ParseWorkerSource({"file://" + path + ".missing"}));
  EXPECT_THAT(ResolveWorkers(gone), StatusIs(absl::StatusCode::kUnavailable, "cannot read"));
  ASSERT_OK_AND_ASSIGN(WorkerSource local, ParseWorkerSource({"dns:///localhost:4321"}));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> resolved, ResolveWorkers(local));
  EXPECT_NE(std::find(resolved.begin(), resolved.end(), "127.0.0.1:4321"), resolved.end())
      << "localhost resolved to " << resolved.size() << " addresses";
}

}  // namespace
}  // namespace moe::server
