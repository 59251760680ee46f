// server/cluster/cluster_main.cc
// moe-cluster: a local cluster on loopback — W expert workers (× replicas) and a router, each a
// separate process on an ephemeral port. Prints the addresses once every process is SERVING,
// then either runs the command after `--` (with MOE_ROUTER set, MOE_ROUTER_METRICS the router's
// metrics address (empty with --nometrics), MOE_WORKERS the workers' addresses comma-separated,
// and "{router}" replaced by the router's address) and stops when it ends, or waits for Ctrl-C /
// SIGTERM.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/program.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "server/cluster/local_cluster.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint folder (config.json + safetensors) or GGUF file. Required.");
ABSL_FLAG(int, workers, 2, "Worker processes; the experts are split evenly between them. 0: one --local router.");
ABSL_FLAG(int, replicas, 1, "Copies of each worker (replicas of its experts).");
ABSL_FLAG(std::string, host, "127.0.0.1", "Loopback address to bind.");
ABSL_FLAG(bool, metrics, true, "Serve /metrics from every process (on ephemeral ports); --nometrics turns them off.");
ABSL_FLAG(bool, shared_on_workers, false,
          "Host the always-on MLPs (shared experts, dense layers) on the first worker(s), not in the router.");
ABSL_FLAG(std::string, worker_flags, "", "Extra flags for every moe-expert, space-separated.");
ABSL_FLAG(std::string, router_flags, "", "Extra flags for moe-router, space-separated.");

namespace {

std::vector<std::string> Words(const std::string& text) {
  return absl::StrSplit(text, ' ', absl::SkipEmpty());
}

// Runs `command` and waits for it while answering SIGINT/SIGTERM; returns its exit code.
int RunChild(std::vector<std::string> command, const std::string& router) {
  for (std::string& arg : command) arg = absl::StrReplaceAll(arg, {{"{router}", router}});
  std::vector<char*> argv;
  for (std::string& a : command) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(argv[0], argv.data());
    std::perror(argv[0]);
    ::_exit(127);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGINT || sig == SIGTERM) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, &status, 0);
      return 130;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  std::vector<char*> positional = moe::base::InitProgram(argc, argv,
      "A router and expert workers on loopback.\n"
      "  moe-cluster --checkpoint=/tmp/model --workers=4 -- moe-client --router={router} --all_layers");
  moe::server::ClusterOptions options;
  options.checkpoint = absl::GetFlag(FLAGS_checkpoint);
  options.workers = absl::GetFlag(FLAGS_workers);
  options.replicas = absl::GetFlag(FLAGS_replicas);
  options.host = absl::GetFlag(FLAGS_host);
  options.shared_on_workers = absl::GetFlag(FLAGS_shared_on_workers);
  options.metrics = absl::GetFlag(FLAGS_metrics);
  options.worker_flags = Words(absl::GetFlag(FLAGS_worker_flags));
  options.router_flags = Words(absl::GetFlag(FLAGS_router_flags));
  if (options.checkpoint.empty()) {
    std::fprintf(stderr, "moe-cluster: --checkpoint is required (see --help)\n");
    return 2;
  }
  auto cluster = moe::server::LocalCluster::Start(options);
  if (!cluster.ok()) {
    std::fprintf(stderr, "moe-cluster: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  const std::string router = (*cluster)->router_address();
  std::printf("moe-cluster: router %s metrics %s\n", router.c_str(), (*cluster)->router_metrics_address().c_str());
  for (int i = 0; i < (*cluster)->num_workers(); ++i) {
    std::printf("moe-cluster: worker %s metrics %s hosts experts %s\n", (*cluster)->worker_addresses()[i].c_str(),
                (*cluster)->worker_metrics_addresses()[i].c_str(), absl::StrJoin((*cluster)->experts_of(i), ",").c_str());
  }
  std::fflush(stdout);
  ::setenv("MOE_ROUTER", router.c_str(), 1);
  ::setenv("MOE_ROUTER_METRICS", (*cluster)->router_metrics_address().c_str(), 1);
  ::setenv("MOE_WORKERS", absl::StrJoin((*cluster)->worker_addresses(), ",").c_str(), 1);
  const std::string path = absl::StrCat(moe::server::ExecutableDir(), ":", std::getenv("PATH") ? std::getenv("PATH") : "");
  ::setenv("PATH", path.c_str(), 1);

  int code = 0;
  if (positional.size() > 1) {
    code = RunChild(std::vector<std::string>(positional.begin() + 1, positional.end()), router);
  } else {
    std::printf("moe-cluster: running; Ctrl-C stops it\n");
    std::fflush(stdout);
    sigdelset(&set, SIGCHLD);
    int sig = 0;
    sigwait(&set, &sig);
  }
  if (absl::Status s = (*cluster)->Stop(); !s.ok()) {
    std::fprintf(stderr, "moe-cluster: %s\n", s.ToString().c_str());
    return code != 0 ? code : 1;
  }
  std::printf("moe-cluster: stopped\n");
  return code;
}
