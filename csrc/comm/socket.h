// Blocking-with-deadline TCP socket helpers shared by the TCP store and the TCP
// backend: listen, connect (retrying until the server is up), accept, and
// whole-buffer send/recv that poll() against a Deadline.
#pragma once

#include <cstddef>
#include <string>

#include "comm/deadline.h"

namespace ravensp::comm {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void close();

 private:
  int fd_ = -1;
};

// Listens on every interface (IPv6 dual-stack when available, else IPv4); port 0
// picks a free port, see local_port().
Socket listen_any(int port, int backlog);
int local_port(const Socket& s);
// Numeric address of this end of a connected socket ("10.0.0.3", "::1").
std::string local_address(const Socket& s);
// Connects to host:port, retrying refused connections until the deadline.
// `what` names the connection in errors.
Socket connect_to(const std::string& host, int port, const Deadline& deadline, const std::string& what);
// Accepts one connection, or throws when the deadline passes.
Socket accept_one(const Socket& listener, const Deadline& deadline, const std::string& what);
void set_nonblocking(const Socket& s);
void set_nodelay(const Socket& s);

// Whole-buffer transfers. They throw Error (with `what`) on a closed connection,
// a socket error, or an expired deadline.
void send_all(const Socket& s, const void* data, size_t n, const Deadline& deadline, const std::string& what);
void recv_all(const Socket& s, void* data, size_t n, const Deadline& deadline, const std::string& what);

}  // namespace ravensp::comm
