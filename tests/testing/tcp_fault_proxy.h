// tests/testing/tcp_fault_proxy.h
// A TCP proxy on loopback that puts faults on one link, for chaos tests where netem is not
// available (this project's test kernels have no sch_netem): it listens on 127.0.0.1:<port()>,
// connects each accepted connection to 127.0.0.1:<target_port>, and copies bytes both ways with
//   - a one-way delay (SetDelay: each chunk leaves `delay` after it arrived, order kept),
//   - a blackhole (SetBlackhole(true): every byte read either way is discarded, connections stay
//     open — a partition, or 100 % loss; turning it off drops the connections that lost bytes,
//     as TCP would give up on them),
//   - dropped connections (DropConnections: both ends see the connection close).
// Partial packet loss cannot be made in user space (TCP below the proxy retransmits); what a
// lossy link does to a gRPC call — late bytes — is what SetDelay makes.
// Test-only. Each connection has four threads (a reader and a writer per direction); all public
// methods are thread-safe.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace moe::testing {

// 127.0.0.1:`port` as a socket address (0: any free port, for bind).
sockaddr_in LoopbackAddress(int port);

class TcpFaultProxy {
 public:
  static absl::StatusOr<std::unique_ptr<TcpFaultProxy>> Start(int target_port);
  ~TcpFaultProxy();  // drops every connection and joins every thread
  TcpFaultProxy(const TcpFaultProxy&) = delete;
  TcpFaultProxy& operator=(const TcpFaultProxy&) = delete;

  int port() const { return port_; }
  void SetDelay(absl::Duration one_way);
  void SetBlackhole(bool on);
  void DropConnections();
  int64_t connections_accepted() const;
  // Bytes written on toward their receiver; a byte the receiver has read is already counted.
  int64_t bytes_forwarded() const;
  int64_t bytes_dropped() const;
  // Blocks until `count` bytes have been dropped by the blackhole, or `timeout` (then false).
  bool WaitForBytesDropped(int64_t count, absl::Duration timeout) const;

  struct Faults;      // the settings every pipe reads (delay, blackhole) and the counters
  class Connection;   // one accepted connection and its upstream, with their four threads

 private:
  TcpFaultProxy() = default;
  void AcceptLoop();

  int listen_fd_ = -1;
  int port_ = 0;
  int target_port_ = 0;
  std::shared_ptr<Faults> faults_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;  // last: it uses everything above
};

}  // namespace moe::testing
