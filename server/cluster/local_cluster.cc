// server/cluster/local_cluster.cc
#include "server/cluster/local_cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "model/checkpoint.h"

namespace moe::server {
namespace {

constexpr int kReadyFd = 100;  // the fd number children see for the ready pipe

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

std::string ExecutableDir() {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/self/exe", ec).parent_path().string();
}

absl::StatusOr<ChildProcess> SpawnServer(std::vector<std::string> argv, absl::Duration timeout) {
  ChildProcess child;
  child.name = std::filesystem::path(argv[0]).filename().string();
  argv.push_back(absl::StrCat("--ready_fd=", kReadyFd));
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {  // child: only async-signal-safe calls until exec
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the launcher
    if (fds[1] == kReadyFd) {
      ::fcntl(kReadyFd, F_SETFD, 0);
    } else {
      ::dup2(fds[1], kReadyFd);  // dup2 clears close-on-exec on the copy
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  child.pid = pid;
  std::string line;
  const absl::Time deadline = absl::Now() + timeout;
  while (line.find('\n') == std::string::npos) {
    const int remaining_ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, remaining_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      ::close(fds[0]);
      StopChild(child, SIGKILL);
      return absl::DeadlineExceededError(absl::StrCat(child.name, " did not become ready within ",
                                                      absl::FormatDuration(timeout)));
    }
    char buf[64];
    const ssize_t got = ::read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {  // EOF: the child exited (or closed the pipe) without reporting
      ::close(fds[0]);
      int status = 0;
      ::waitpid(pid, &status, 0);
      return absl::UnavailableError(absl::StrCat(child.name, " exited with code ", ExitCode(status),
                                                 " before becoming ready (see its messages above)"));
    }
    line.append(buf, got);
  }
  ::close(fds[0]);
  std::vector<std::string> ports = absl::StrSplit(absl::StripAsciiWhitespace(line), ' ', absl::SkipEmpty());
  if (ports.size() > 1 && !absl::SimpleAtoi(ports[1], &child.metrics_port)) child.metrics_port = -1;
  if (ports.empty() || !absl::SimpleAtoi(ports[0], &child.port) || child.port <= 0) {
    StopChild(child, SIGKILL);
    return absl::InternalError(absl::StrCat(child.name, " reported '", line, "' instead of a port"));
  }
  return child;
}

int StopChild(ChildProcess& child, int signal) {
  if (child.pid <= 0) return 0;
  ::kill(child.pid, signal);
  int status = 0;
  while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
  }
  child.pid = -1;
  return ExitCode(status);
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const ClusterOptions& options) {
  ASSIGN_OR_RETURN(auto checkpoint, model::Checkpoint::Open(options.checkpoint));
  const int num_experts = checkpoint->config().num_experts;
  if (options.workers < 0 || options.workers > num_experts || options.replicas < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cannot split ", num_experts, " experts over ",
                                                   options.workers, " workers × ", options.replicas,
                                                   " replicas"));
  }
  const std::string bin = options.bin_dir.empty() ? ExecutableDir() : options.bin_dir;
  std::unique_ptr<LocalCluster> cluster(new LocalCluster());
  cluster->host_ = options.host;
  for (int r = 0; r < options.replicas && options.workers > 0; ++r) {
    for (int w = 0; w < options.workers; ++w) {
      const int first = w * num_experts / options.workers;
      const int last = (w + 1) * num_experts / options.workers - 1;
      std::vector<std::string> argv = {bin + "/moe-expert", "--checkpoint=" + options.checkpoint,
                                       absl::StrCat("--experts=", first, "-", last,
                                                    options.shared_on_workers && w == 0 ? ",shared" : ""),
                                       "--listen=" + options.host + ":0"};
      argv.push_back(options.metrics ? "--metrics_port=0" : "--metrics_port=-1");
      argv.insert(argv.end(), options.worker_flags.begin(), options.worker_flags.end());
      ASSIGN_OR_RETURN(ChildProcess child, SpawnServer(argv, options.start_timeout));
      cluster->workers_.push_back(child);
      std::vector<int> ids;
      for (int e = first; e <= last; ++e) ids.push_back(e);
      cluster->experts_.push_back(ids);
    }
  }
  std::vector<std::string> argv = {bin + "/moe-router", "--checkpoint=" + options.checkpoint,
                                   "--listen=" + options.host + ":0"};
  argv.push_back(options.workers == 0 ? std::string("--local")
                                      : "--workers=" + absl::StrJoin(cluster->worker_addresses(), ","));
  if (options.shared_on_workers && options.workers > 0) argv.push_back("--shared_experts=workers");
  argv.push_back(options.metrics ? "--metrics_port=0" : "--metrics_port=-1");
  argv.insert(argv.end(), options.router_flags.begin(), options.router_flags.end());
  ASSIGN_OR_RETURN(cluster->router_, SpawnServer(argv, options.start_timeout));
  return cluster;
}

LocalCluster::~LocalCluster() { (void)Stop(); }

std::string LocalCluster::router_address() const { return absl::StrCat(host_, ":", router_.port); }

std::vector<std::string> LocalCluster::worker_addresses() const {
  std::vector<std::string> out;
  for (const ChildProcess& w : workers_) out.push_back(absl::StrCat(host_, ":", w.port));
  return out;
}

std::string LocalCluster::router_metrics_address() const {
  return router_.metrics_port > 0 ? absl::StrCat(host_, ":", router_.metrics_port) : "";
}

std::vector<std::string> LocalCluster::worker_metrics_addresses() const {
  std::vector<std::string> out;
  for (const ChildProcess& w : workers_) out.push_back(w.metrics_port > 0 ? absl::StrCat(host_, ":", w.metrics_port) : "");
  return out;
}

void LocalCluster::KillWorker(int i) { StopChild(workers_[i], SIGKILL); }

absl::Status LocalCluster::Stop() {
  std::vector<std::string> failed;
  if (router_.pid > 0) {
    const int code = StopChild(router_, SIGTERM);
    if (code != 0) failed.push_back(absl::StrCat("moe-router (exit ", code, ")"));
  }
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i].pid <= 0) continue;
    const int code = StopChild(workers_[i], SIGTERM);
    if (code != 0) failed.push_back(absl::StrCat("moe-expert #", i, " (exit ", code, ")"));
  }
  if (failed.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("did not stop cleanly: ", absl::StrJoin(failed, ", ")));
}

}  // namespace moe::server
