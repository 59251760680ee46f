// tests/testing/tcp_fault_proxy.cc
#include "tests/testing/tcp_fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace moe::testing {

struct TcpFaultProxy::Faults {
  absl::Mutex mu;
  absl::Duration delay ABSL_GUARDED_BY(mu) = absl::ZeroDuration();
  bool blackhole ABSL_GUARDED_BY(mu) = false;
  int64_t dropped ABSL_GUARDED_BY(mu) = 0;
  std::atomic<int64_t> accepted{0}, forwarded{0};
};

namespace {

constexpr int kPollMs = 50;  // how often a blocked reader looks at its connection's state

struct Chunk {
  absl::Time due;
  std::string bytes;
};

int LoopbackSocket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // no Nagle delay of our own
  }
  return fd;
}

}  // namespace

sockaddr_in LoopbackAddress(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

class TcpFaultProxy::Connection {
 public:
  Connection(int client_fd, int server_fd, std::shared_ptr<Faults> faults)
      : faults_(std::move(faults)), up_{client_fd, server_fd}, down_{server_fd, client_fd} {
    for (Pipe* p : {&up_, &down_}) {
      p->reader = std::thread([this, p] { Read(*p); });
      p->writer = std::thread([this, p] { Write(*p); });
    }
  }
  ~Connection() {
    Kill();
    for (Pipe* p : {&up_, &down_}) {
      p->reader.join();
      p->writer.join();
    }
    ::close(up_.from);
    ::close(up_.to);
  }
  // Both ends see the connection close; every thread returns soon after.
  void Kill() {
    for (Pipe* p : {&up_, &down_}) {
      absl::MutexLock lock(&p->mu);
      p->dead = true;
    }
    ::shutdown(up_.from, SHUT_RDWR);
    ::shutdown(up_.to, SHUT_RDWR);
  }
  bool lost_bytes() const { return lost_bytes_.load(); }

 private:
  struct Pipe {
    Pipe(int f, int t) : from(f), to(t) {}
    const int from, to;
    absl::Mutex mu;
    std::deque<Chunk> queue ABSL_GUARDED_BY(mu);
    bool eof ABSL_GUARDED_BY(mu) = false;
    bool dead ABSL_GUARDED_BY(mu) = false;
    std::thread reader, writer;
  };

  void Read(Pipe& p) {
    std::string buffer(64 * 1024, '\0');
    while (true) {
      {
        absl::MutexLock lock(&p.mu);
        if (p.dead) break;
      }
      pollfd pfd{p.from, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, kPollMs);
      if (ready < 0 && errno != EINTR) break;
      if (ready <= 0) continue;
      const ssize_t n = ::recv(p.from, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the sender closed (or failed): pass the close on once drained
      absl::Duration delay;
      {
        absl::MutexLock lock(&faults_->mu);
        if (faults_->blackhole) {
          faults_->dropped += n;
          lost_bytes_ = true;
          continue;
        }
        delay = faults_->delay;
      }
      absl::MutexLock lock(&p.mu);
      p.queue.push_back({absl::Now() + delay, buffer.substr(0, static_cast<size_t>(n))});
    }
    absl::MutexLock lock(&p.mu);
    p.eof = true;
  }

  void Write(Pipe& p) {
    while (true) {
      Chunk chunk;
      {
        absl::MutexLock lock(&p.mu);
        p.mu.Await(absl::Condition(
            +[](Pipe* q) ABSL_NO_THREAD_SAFETY_ANALYSIS { return q->dead || q->eof || !q->queue.empty(); }, &p));
        if (p.dead) return;
        if (p.queue.empty()) {  // the sender closed and everything it sent has left
          ::shutdown(p.to, SHUT_WR);
          return;
        }
        const absl::Time due = p.queue.front().due;
        if (absl::Now() < due) {  // a delayed chunk: wait for its time (or for the connection to die)
          p.mu.AwaitWithDeadline(absl::Condition(&p.dead), due);
          continue;
        }
        chunk = std::move(p.queue.front());
        p.queue.pop_front();
      }
      // Counted before the write, so that a receiver holding the bytes also sees them counted; what a
      // failed write did not send is taken back.
      faults_->forwarded += static_cast<int64_t>(chunk.bytes.size());
      size_t sent = 0;
      while (sent < chunk.bytes.size()) {
        const ssize_t n = ::send(p.to, chunk.bytes.data() + sent, chunk.bytes.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {  // the receiver is gone: close the other way too
          faults_->forwarded -= static_cast<int64_t>(chunk.bytes.size() - sent);
          Kill();
          return;
        }
        sent += static_cast<size_t>(n);
      }
    }
  }

  const std::shared_ptr<Faults> faults_;
  std::atomic<bool> lost_bytes_{false};
  Pipe up_;    // client -> target
  Pipe down_;  // target -> client
};

absl::StatusOr<std::unique_ptr<TcpFaultProxy>> TcpFaultProxy::Start(int target_port) {
  std::unique_ptr<TcpFaultProxy> proxy(new TcpFaultProxy());
  proxy->target_port_ = target_port;
  proxy->faults_ = std::make_shared<Faults>();
  proxy->listen_fd_ = LoopbackSocket();
  if (proxy->listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in address = LoopbackAddress(0);
  socklen_t length = sizeof(address);
  if (::bind(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(proxy->listen_fd_, 64) != 0 ||
      ::getsockname(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return absl::InternalError(absl::StrCat("listen on 127.0.0.1: ", std::strerror(errno)));
  }
  proxy->port_ = ntohs(address.sin_port);
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

TcpFaultProxy::~TcpFaultProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (acceptor_.joinable()) acceptor_.join();
  DropConnections();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void TcpFaultProxy::AcceptLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, kPollMs) <= 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    const int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const int server = LoopbackSocket();
    const sockaddr_in target = LoopbackAddress(target_port_);
    if (server < 0 || ::connect(server, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) {
      ::close(client);  // the target is not listening: the client sees a closed connection
      if (server >= 0) ::close(server);
      continue;
    }
    ++faults_->accepted;
    auto connection = std::make_unique<Connection>(client, server, faults_);
    absl::MutexLock lock(&mu_);
    connections_.push_back(std::move(connection));
  }
}

void TcpFaultProxy::SetDelay(absl::Duration one_way) {
  absl::MutexLock lock(&faults_->mu);
  faults_->delay = one_way;
}

void TcpFaultProxy::SetBlackhole(bool on) {
  {
    absl::MutexLock lock(&faults_->mu);
    faults_->blackhole = on;
  }
  if (on) return;
  std::vector<std::unique_ptr<Connection>> broken;  // their byte streams have holes: TCP would give up
  {
    absl::MutexLock lock(&mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->lost_bytes()) {
        broken.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  broken.clear();  // each destructor kills its connection and joins its threads
}

void TcpFaultProxy::DropConnections() {
  std::vector<std::unique_ptr<Connection>> all;
  {
    absl::MutexLock lock(&mu_);
    all.swap(connections_);
  }
  all.clear();
}

int64_t TcpFaultProxy::connections_accepted() const { return faults_->accepted.load(); }
int64_t TcpFaultProxy::bytes_forwarded() const { return faults_->forwarded.load(); }
int64_t TcpFaultProxy::bytes_dropped() const {
  absl::MutexLock lock(&faults_->mu);
  return faults_->dropped;
}

bool TcpFaultProxy::WaitForBytesDropped(int64_t count, absl::Duration timeout) const {
  absl::MutexLock lock(&faults_->mu);
  auto reached = [this, count]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return faults_->dropped >= count; };
  return faults_->mu.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

}  // namespace moe::testing
