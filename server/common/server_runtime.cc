// server/common/server_runtime.cc
#include "server/common/server_runtime.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"

namespace moe::server {

absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(const std::vector<grpc::Service*>& services,
                                                          const ServerOptions& options, int* port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen,
                           options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(), port);
  const int limit = options.max_message_bytes > INT_MAX ? INT_MAX : static_cast<int>(options.max_message_bytes);
  builder.SetMaxReceiveMessageSize(limit);
  builder.SetMaxSendMessageSize(limit);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // The router pings its workers every second (proto::kWorkerKeepalive): permit that, and never
  // answer an early ping with a GOAWAY (0 strikes = unlimited).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  for (grpc::Service* s : services) builder.RegisterService(s);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", false);
  health->SetServingStatus(kLivenessService, true);
  return server;
}

namespace {

// The process's health mirror (StartHealthMirror), if any.
absl::Mutex mirror_mu;
std::unique_ptr<grpc::Server>& Mirror() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mirror_mu) {
  static auto* mirror = new std::unique_ptr<grpc::Server>();
  return *mirror;
}

}  // namespace

absl::Status StartHealthMirror(const std::string& listen, int* port) {
  absl::MutexLock lock(&mirror_mu);
  if (Mirror() != nullptr) return absl::FailedPreconditionError("the health mirror is already running");
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), port);
  // gRPC needs one polled service besides the health one: this answers UNIMPLEMENTED to anything.
  static auto* other_methods = new grpc::CallbackGenericService();
  builder.RegisterCallbackGenericService(other_methods);
  Mirror() = builder.BuildAndStart();
  if (Mirror() == nullptr || *port == 0) {
    Mirror().reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, " (health)"));
  }
  Mirror()->GetHealthCheckService()->SetServingStatus("", false);
  Mirror()->GetHealthCheckService()->SetServingStatus(kLivenessService, true);
  return absl::OkStatus();
}

void SetReady(grpc::Server& server, const std::vector<std::string>& service_names, bool ready) {
  std::vector<grpc::HealthCheckServiceInterface*> targets = {server.GetHealthCheckService()};
  absl::MutexLock lock(&mirror_mu);
  if (Mirror() != nullptr) targets.push_back(Mirror()->GetHealthCheckService());
  for (grpc::HealthCheckServiceInterface* health : targets) {
    health->SetServingStatus("", ready);
    for (const std::string& name : service_names) health->SetServingStatus(name, ready);
  }
}

void NotifyReadyFd(int fd, int port, int metrics_port) {
  if (fd < 0) return;
  const std::string line = absl::StrCat(port, " ", metrics_port, "\n");
  ssize_t unused = ::write(fd, line.data(), line.size());
  (void)unused;
  ::close(fd);
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

namespace {
// absl::ToUnixNanos of the last NoteCallArrived (0: none yet).
std::atomic<int64_t> last_call_nanos{0};
}  // namespace

void NoteCallArrived() { last_call_nanos.store(absl::GetCurrentTimeNanos(), std::memory_order_relaxed); }

int WaitForTerminationAndDrain(grpc::Server& server, absl::Duration drain, absl::Duration quiet) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  sigwait(&set, &signal_number);
  std::fprintf(stderr, "received %s: NOT_SERVING, draining for up to %s\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", absl::FormatDuration(drain).c_str());
  server.GetHealthCheckService()->SetServingStatus(false);
  {
    absl::MutexLock lock(&mirror_mu);
    if (Mirror() != nullptr) Mirror()->GetHealthCheckService()->SetServingStatus(false);
  }
  const absl::Time signalled = absl::Now(), deadline = signalled + drain;
  // Still accepting: calls whose requests were on their way arrive and are served. Ends once none
  // has arrived for `quiet` (at once when idle), or at the drain deadline.
  while (true) {
    const absl::Time quiet_from = absl::FromUnixNanos(last_call_nanos.load(std::memory_order_relaxed)) + quiet;
    const absl::Time now = absl::Now();
    if (now >= quiet_from || now >= deadline) break;
    absl::SleepFor(std::min(quiet_from, deadline) - now);
  }
  std::fprintf(stderr, "no call for %s: stopped accepting after %s, waiting for those in flight\n",
               absl::FormatDuration(quiet).c_str(), absl::FormatDuration(absl::Now() - signalled).c_str());
  server.Shutdown(std::chrono::system_clock::now() +
                  std::chrono::milliseconds(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()))));
  server.Wait();
  absl::MutexLock lock(&mirror_mu);
  if (Mirror() != nullptr) Mirror()->Shutdown(std::chrono::system_clock::now());
  return signal_number;
}

}  // namespace moe::server
