// tests/testing/tcp_fault_proxy_test.cc
// TcpFaultProxy in front of an echo server on loopback: bytes pass both ways unchanged and in
// order, with and without a delay; a blackhole drops them and healing closes the broken
// connection; DropConnections closes it; a target that is not listening closes the client's.
#include "tests/testing/tcp_fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace moe::testing {
namespace {

// Accepts connections and echoes each until its client closes.
class EchoServer {
 public:
  EchoServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = LoopbackAddress(0);
    socklen_t n = sizeof(a);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n), 0);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] {
      while (true) {
        const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;  // the listening socket was shut down
        echoes_.emplace_back([c] {
          char buf[4096];
          ssize_t n;
          while ((n = ::recv(c, buf, sizeof(buf), 0)) > 0) {
            if (::send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
          }
          ::close(c);
        });
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    acceptor_.join();
    for (std::thread& t : echoes_) t.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1, port_ = 0;
  std::vector<std::thread> echoes_;  // used by the acceptor only, joined after it
  std::thread acceptor_;
};

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in a = LoopbackAddress(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

void SendAll(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    sent += static_cast<size_t>(n);
  }
}

// Reads exactly `size` bytes, or fewer if the connection closes first.
std::string ReadBytes(int fd, size_t size) {
  std::string got;
  char buf[4096];
  while (got.size() < size) {
    const ssize_t n = ::recv(fd, buf, std::min(sizeof(buf), size - got.size()), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// True when the peer has closed: recv returns end-of-file (or a reset), not data.
bool ClosedByPeer(int fd) {
  char c;
  return ::recv(fd, &c, 1, 0) <= 0;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(TcpFaultProxyTest, BytesPassBothWaysUnchanged) {
  EchoServer echo;
  auto proxy = TcpFaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int fd = Connect((*proxy)->port());
  const std::string sent = RandomBytes(1 << 20, 1);
  std::thread writer([&] { SendAll(fd, sent); });
  EXPECT_EQ(ReadBytes(fd, sent.size()), sent);
  writer.join();
  EXPECT_EQ((*proxy)->connections_accepted(), 1);
  EXPECT_EQ((*proxy)->bytes_forwarded(), 2 * static_cast<int64_t>(sent.size()));
  EXPECT_EQ((*proxy)->bytes_dropped(), 0);
  ::close(fd);
}

TEST(TcpFaultProxyTest, DelayedBytesStillArriveWholeAndInOrder) {
  EchoServer echo;
  auto proxy = TcpFaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  (*proxy)->SetDelay(absl::Milliseconds(20));
  const int fd = Connect((*proxy)->port());
  std::string all;
  for (int i = 0; i < 10; ++i) {
    const std::string message = RandomBytes(1000 + 97 * i, 10 + i);
    SendAll(fd, message);
    all += message;
  }
  EXPECT_EQ(ReadBytes(fd, all.size()), all);
  ::close(fd);
}

TEST(TcpFaultProxyTest, ABlackholeDropsBytesAndHealingClosesTheBrokenConnection) {
  EchoServer echo;
  auto proxy = TcpFaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int fd = Connect((*proxy)->port());
  SendAll(fd, "before");
  EXPECT_EQ(ReadBytes(fd, 6), "before");
  (*proxy)->SetBlackhole(true);
  SendAll(fd, std::string(1000, 'x'));
  ASSERT_TRUE((*proxy)->WaitForBytesDropped(1000, absl::Seconds(30)));
  (*proxy)->SetBlackhole(false);
  EXPECT_TRUE(ClosedByPeer(fd)) << "the connection lost bytes: healing must close it, not resume it";
  ::close(fd);
  const int again = Connect((*proxy)->port());  // a new connection works
  SendAll(again, "after");
  EXPECT_EQ(ReadBytes(again, 5), "after");
  EXPECT_EQ((*proxy)->connections_accepted(), 2);
  ::close(again);
}

TEST(TcpFaultProxyTest, DropConnectionsClosesThem) {
  EchoServer echo;
  auto proxy = TcpFaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int fd = Connect((*proxy)->port());
  SendAll(fd, "ping");
  EXPECT_EQ(ReadBytes(fd, 4), "ping");
  (*proxy)->DropConnections();
  EXPECT_TRUE(ClosedByPeer(fd));
  ::close(fd);
}

TEST(TcpFaultProxyTest, ATargetThatIsNotListeningClosesTheClientsConnection) {
  int unused_port;
  {
    EchoServer gone;  // a port that was just free, and is closed again
    unused_port = gone.port();
  }
  auto proxy = TcpFaultProxy::Start(unused_port);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int fd = Connect((*proxy)->port());
  EXPECT_TRUE(ClosedByPeer(fd));
  EXPECT_EQ((*proxy)->connections_accepted(), 0);
  ::close(fd);
}

}  // namespace
}  // namespace moe::testing
