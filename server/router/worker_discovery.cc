// server/router/worker_discovery.cc
#include "server/router/worker_discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace moe::server {

absl::StatusOr<WorkerSource> ParseWorkerSource(const std::vector<std::string>& flag) {
  WorkerSource source;
  if (flag.empty()) return absl::InvalidArgumentError("--workers names no worker");
  const bool dynamic = std::any_of(flag.begin(), flag.end(), [](const std::string& f) {
    return absl::StartsWith(f, "dns:") || absl::StartsWith(f, "file:");
  });
  if (!dynamic) {
    source.list = flag;
    return source;
  }
  if (flag.size() != 1) {
    return absl::InvalidArgumentError("--workers: a dns:/// or file:/// source stands alone (no list beside it)");
  }
  absl::string_view text = flag[0];
  if (absl::ConsumePrefix(&text, "dns:///")) {
    const size_t colon = text.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 || !absl::SimpleAtoi(text.substr(colon + 1), &port) ||
        port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--workers: '", flag[0], "' is not dns:///NAME:PORT (e.g. dns:///moe-expert:50061)"));
    }
    source.kind = WorkerSource::Kind::kDns;
    source.host = std::string(text.substr(0, colon));
    source.port = port;
    return source;
  }
  if (absl::ConsumePrefix(&text, "file://") && text.size() > 1 && text[0] == '/' && text.back() != '/') {
    source.kind = WorkerSource::Kind::kFile;
    source.path = std::string(text);
    return source;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--workers: '", flag[0], "' is neither dns:///NAME:PORT nor file:///ABSOLUTE/PATH"));
}

absl::StatusOr<std::vector<std::string>> ResolveWorkers(const WorkerSource& source) {
  std::set<std::string> found;
  switch (source.kind) {
    case WorkerSource::Kind::kList: {  // as given (worker indices follow the flag), once each
      std::vector<std::string> listed;
      for (const std::string& a : source.list) {
        if (found.insert(a).second) listed.push_back(a);
      }
      return listed;
    }
    case WorkerSource::Kind::kDns: {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* result = nullptr;
      const int rc = ::getaddrinfo(source.host.c_str(), nullptr, &hints, &result);
      if (rc != 0) {
        return absl::UnavailableError(absl::StrCat("--workers: dns:///", source.host, ":", source.port,
                                                   " does not resolve: ", ::gai_strerror(rc)));
      }
      for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
        char ip[INET6_ADDRSTRLEN] = {};
        if (a->ai_family == AF_INET) {
          ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, ip, sizeof(ip));
          found.insert(absl::StrCat(ip, ":", source.port));
        } else if (a->ai_family == AF_INET6) {
          ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, ip, sizeof(ip));
          found.insert(absl::StrCat("[", ip, "]:", source.port));
        }
      }
      ::freeaddrinfo(result);
      break;
    }
    case WorkerSource::Kind::kFile: {
      std::ifstream in(source.path);
      if (!in) return absl::UnavailableError(absl::StrCat("--workers: cannot read ", source.path));
      std::stringstream text;
      text << in.rdbuf();
      for (absl::string_view line : absl::StrSplit(text.str(), '\n')) {
        line = line.substr(0, line.find('#'));
        for (absl::string_view item : absl::StrSplit(line, absl::ByAnyChar(", \t\r"), absl::SkipEmpty())) {
          found.insert(std::string(item));
        }
      }
      break;
    }
  }
  return std::vector<std::string>(found.begin(), found.end());
}

WorkerDiscovery::WorkerDiscovery(WorkerSource source, WorkerPool* pool, RouterMetrics* metrics,
                                 bool controller_drains, absl::Duration interval, absl::Duration connect_timeout)
    : source_(std::move(source)),
      pool_(pool),
      metrics_(metrics),
      controller_drains_(controller_drains),
      interval_(interval),
      connect_timeout_(connect_timeout) {}

WorkerDiscovery::~WorkerDiscovery() { Stop(); }

void WorkerDiscovery::Start() {
  loop_.Start(interval_, [this] { RunOnce(); });
}

void WorkerDiscovery::Stop() { loop_.Stop(); }

WorkerDiscovery::Round WorkerDiscovery::RunOnce() {
  absl::MutexLock round_lock(&round_mu_);
  Round round;
  absl::StatusOr<std::vector<std::string>> now = ResolveWorkers(source_);
  if (!now.ok()) {
    round.error = std::string(now.status().message());
    std::fprintf(stderr, "moe-router: discovery: %s; the workers stay as they are\n", round.error.c_str());
    return round;
  }
  const std::set<std::string> wanted(now->begin(), now->end());
  for (const std::string& address : wanted) {
    int index = -1;
    for (int i = 0; i < pool_->size(); ++i) {
      if (pool_->worker(i).address == address && !pool_->IsRemoved(i)) index = i;
    }
    if (index >= 0) {
      if (pool_->IsLeaving(index)) pool_->SetLeaving(index, false);  // back before it was drained
      continue;
    }
    absl::StatusOr<int> added = pool_->AddWorker(address, connect_timeout_);
    if (!added.ok()) {
      round.failed.push_back(address);
      std::fprintf(stderr, "moe-router: discovery: worker=%s not added: %s\n", address.c_str(),
                   added.status().ToString().c_str());
      continue;
    }
    if (metrics_ != nullptr) metrics_->AddWorker(*added, address);
    round.joined.push_back(address);
    std::fprintf(stderr, "moe-router: discovery: worker=%s joined (hosting %d experts)\n", address.c_str(),
                 pool_->PlacedOn(*added));
  }
  for (int i = 0; i < pool_->size(); ++i) {
    if (pool_->IsRemoved(i) || wanted.contains(pool_->worker(i).address)) continue;
    if (!pool_->IsLeaving(i)) {
      pool_->SetLeaving(i, true);
      round.leaving.push_back(pool_->worker(i).address);
      std::fprintf(stderr, "moe-router: discovery: worker=%s left the source: draining\n",
                   pool_->worker(i).address.c_str());
    }
    if (controller_drains_) continue;  // the placement controller moves its experts, then removes it
    // No controller: what has another live replica leaves the placement now; the rest stays
    // until the worker is gone for good or comes back.
    std::vector<experts::ExpertKey> movable;
    for (const auto& [key, replicas] : pool_->placement()) {
      if (std::find(replicas.begin(), replicas.end(), i) == replicas.end()) continue;
      if (std::any_of(replicas.begin(), replicas.end(), [&](int r) { return r != i && pool_->IsUp(r); })) {
        movable.push_back(key);
      }
    }
    if (!movable.empty()) pool_->RemoveReplicas(i, movable);
    if (pool_->PlacedOn(i) == 0) {
      pool_->Remove(i);
      round.removed.push_back(pool_->worker(i).address);
      std::fprintf(stderr, "moe-router: discovery: worker=%s removed\n", pool_->worker(i).address.c_str());
    }
  }
  return round;
}

}  // namespace moe::server
