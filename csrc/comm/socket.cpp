// TCP socket helpers; see socket.h.
#include "comm/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "ravensp/check.h"

namespace ravensp::comm {

Socket::~Socket() { close(); }

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Socket listen_any(int port, int backlog) {
  int one = 1, zero = 0;
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && ::listen(fd, backlog) == 0) return Socket(fd);
    ::close(fd);
  }
  // No IPv6 on this host: plain IPv4.
  fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  RAVENSP_CHECK(fd >= 0, "comm: socket() failed: ", std::strerror(errno));
  Socket s(fd);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(static_cast<uint16_t>(port));
  RAVENSP_CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0, "comm: cannot bind port ", port, ": ",
                std::strerror(errno));
  RAVENSP_CHECK(::listen(fd, backlog) == 0, "comm: listen on port ", port, " failed: ", std::strerror(errno));
  return s;
}

int local_port(const Socket& s) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  RAVENSP_CHECK(getsockname(s.fd(), reinterpret_cast<sockaddr*>(&a), &len) == 0, "comm: getsockname failed: ",
                std::strerror(errno));
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

std::string local_address(const Socket& s) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  RAVENSP_CHECK(getsockname(s.fd(), reinterpret_cast<sockaddr*>(&a), &len) == 0, "comm: getsockname failed: ",
                std::strerror(errno));
  char host[NI_MAXHOST];
  int rc = getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof(host), nullptr, 0, NI_NUMERICHOST);
  RAVENSP_CHECK(rc == 0, "comm: getnameinfo failed: ", gai_strerror(rc));
  std::string h(host);
  if (h.rfind("::ffff:", 0) == 0) h = h.substr(7);  // IPv4-mapped: peers may lack IPv6
  return h;
}

Socket connect_to(const std::string& host, int port, const Deadline& deadline, const std::string& what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string last = "no address";
  int delay_ms = 1;
  while (true) {
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    RAVENSP_CHECK(rc == 0, what, ": cannot resolve '", host, "': ", gai_strerror(rc));
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      Socket s(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
      if (!s.valid()) continue;
      if (::connect(s.fd(), ai->ai_addr, ai->ai_addrlen) == 0) {
        freeaddrinfo(res);
        set_nodelay(s);
        return s;
      }
      last = std::strerror(errno);
    }
    freeaddrinfo(res);
    // The server may simply not be listening yet: retry until the deadline.
    RAVENSP_CHECK(!deadline.expired(), what, ": cannot connect to ", host, ":", port, " after ",
                  deadline.elapsed_s(), " s: ", last);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    delay_ms = delay_ms < 100 ? delay_ms * 2 : 100;
  }
}

Socket accept_one(const Socket& listener, const Deadline& deadline, const std::string& what) {
  while (true) {
    pollfd p{listener.fd(), POLLIN, 0};
    int rc = ::poll(&p, 1, deadline.remaining_ms(100));
    if (rc > 0) {
      Socket s(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (s.valid()) {
        set_nodelay(s);
        return s;
      }
      RAVENSP_CHECK(errno == EINTR || errno == EAGAIN || errno == ECONNABORTED, what, ": accept failed: ",
                    std::strerror(errno));
    }
    RAVENSP_CHECK(rc >= 0 || errno == EINTR, what, ": poll failed: ", std::strerror(errno));
    RAVENSP_CHECK(!deadline.expired(), what, ": timed out after ", deadline.elapsed_s(),
                  " s waiting for a peer to connect");
  }
}

void set_nonblocking(const Socket& s) {
  int flags = fcntl(s.fd(), F_GETFL, 0);
  RAVENSP_CHECK(flags >= 0 && fcntl(s.fd(), F_SETFL, flags | O_NONBLOCK) == 0, "comm: fcntl(O_NONBLOCK) failed: ",
                std::strerror(errno));
}

void set_nodelay(const Socket& s) {
  int one = 1;
  setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void send_all(const Socket& s, const void* data, size_t n, const Deadline& deadline, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    pollfd pf{s.fd(), POLLOUT, 0};
    int rc = ::poll(&pf, 1, deadline.remaining_ms(100));
    RAVENSP_CHECK(rc >= 0 || errno == EINTR, what, ": poll failed: ", std::strerror(errno));
    if (rc > 0) {
      ssize_t k = ::send(s.fd(), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k > 0) {
        p += k;
        n -= static_cast<size_t>(k);
        continue;
      }
      RAVENSP_CHECK(k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR), what,
                    ": connection lost while sending: ", k == 0 ? "closed" : std::strerror(errno));
    }
    RAVENSP_CHECK(!deadline.expired(), what, ": send timed out after ", deadline.elapsed_s(), " s");
  }
}

void recv_all(const Socket& s, void* data, size_t n, const Deadline& deadline, const std::string& what) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    pollfd pf{s.fd(), POLLIN, 0};
    int rc = ::poll(&pf, 1, deadline.remaining_ms(100));
    RAVENSP_CHECK(rc >= 0 || errno == EINTR, what, ": poll failed: ", std::strerror(errno));
    if (rc > 0) {
      ssize_t k = ::recv(s.fd(), p, n, MSG_DONTWAIT);
      RAVENSP_CHECK(k != 0, what, ": the peer closed the connection (did it exit or fail?)");
      if (k > 0) {
        p += k;
        n -= static_cast<size_t>(k);
        continue;
      }
      RAVENSP_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR, what,
                    ": connection lost while receiving: ", std::strerror(errno));
    }
    RAVENSP_CHECK(!deadline.expired(), what, ": receive timed out after ", deadline.elapsed_s(), " s");
  }
}

}  // namespace ravensp::comm
