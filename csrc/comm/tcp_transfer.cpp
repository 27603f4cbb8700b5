// The TCP backend's poll()-driven progress engine; see tcp_transfer.h.
#include "comm/tcp_transfer.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "ravensp/comm.h"

namespace ravensp::comm {
namespace {

// Per peer, the queue of sends and the queue of receives, each worked in order.
// Every message travels behind an 8-byte length, so a receive whose size differs
// from what the peer sent is an error naming both sizes, not a silent desync.
struct Lane {
  bool send = false;
  std::vector<const Transfer*> q;
  size_t next = 0;     // index of the transfer in progress
  uint64_t header = 0;  // its length on the wire
  size_t header_done = 0;
  size_t offset = 0;  // payload bytes of it already moved
  bool done() const { return next >= q.size(); }
  void start() {
    header_done = offset = 0;
    if (!done()) header = q[next]->bytes;
  }
  // Where the next bytes go or come from: the header, then the payload.
  char* cursor(size_t* len) {
    if (header_done < 8) {
      *len = 8 - header_done;
      return reinterpret_cast<char*>(&header) + header_done;
    }
    *len = q[next]->bytes - offset;
    return q[next]->data + offset;
  }
  // Returns "" or a size-mismatch error.
  std::string moved(size_t k);
};

std::string describe(const Transfer& t, size_t moved);

std::string Lane::moved(size_t k) {
  if (header_done < 8) {
    header_done += k;
    if (header_done == 8 && !send && header != q[next]->bytes)
      return describe(*q[next], 0) + ": the peer sent " + std::to_string(header) + " bytes, this rank expects " +
             std::to_string(q[next]->bytes) + " (counts or dtypes disagree between ranks)";
  } else {
    offset += k;
  }
  if (header_done == 8 && offset == q[next]->bytes) {
    ++next;
    start();
  }
  return "";
}

std::string describe(const Transfer& t, size_t moved) {
  std::ostringstream os;
  os << (t.send ? "send to" : "recv from") << " rank " << t.group_peer << " (" << moved << " of " << t.bytes
     << " bytes)";
  return os.str();
}

std::string copy_to_self(const std::vector<Transfer>& xs, int me) {
  std::vector<const Transfer*> sends, recvs;
  for (const Transfer& t : xs) {
    if (t.peer != me) continue;
    (t.send ? sends : recvs).push_back(&t);
  }
  if (sends.size() != recvs.size())
    return "send_recv to itself: " + std::to_string(sends.size()) + " sends but " + std::to_string(recvs.size()) +
           " receives";
  for (size_t i = 0; i < sends.size(); ++i) {
    if (sends[i]->bytes != recvs[i]->bytes)
      return "send_recv to itself: send " + std::to_string(i) + " has " + std::to_string(sends[i]->bytes) +
             " bytes but the matching receive " + std::to_string(recvs[i]->bytes);
    if (sends[i]->bytes) std::memmove(recvs[i]->data, sends[i]->data, sends[i]->bytes);
  }
  return "";
}

}  // namespace

std::string run_transfers(TcpMesh& mesh, const std::vector<Transfer>& xs, const Deadline& deadline,
                          double timeout_s) {
  std::string err = copy_to_self(xs, mesh.rank);
  if (!err.empty()) return err;
  std::vector<Lane> out(mesh.size), in(mesh.size);
  for (const Transfer& t : xs) {
    if (t.peer == mesh.rank) continue;
    (t.send ? out : in)[t.peer].q.push_back(&t);
  }
  for (int p = 0; p < mesh.size; ++p) {
    out[p].send = true;
    out[p].start();
    in[p].start();
  }
  std::vector<pollfd> fds;
  std::vector<int> fd_peer;
  while (true) {
    fds.clear();
    fd_peer.clear();
    for (int p = 0; p < mesh.size; ++p) {
      short ev = (out[p].done() ? 0 : POLLOUT) | (in[p].done() ? 0 : POLLIN);
      if (ev == 0) continue;
      fds.push_back(pollfd{mesh.peers[p].fd(), ev, 0});
      fd_peer.push_back(p);
    }
    if (fds.empty()) return "";
    int rc = ::poll(fds.data(), fds.size(), deadline.remaining_ms(100));
    if (rc < 0 && errno != EINTR) err = std::string("poll failed: ") + std::strerror(errno);
    for (size_t i = 0; rc > 0 && err.empty() && i < fds.size(); ++i) {
      int p = fd_peer[i];
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        Lane& l = in[p];
        if (!l.done()) {
          size_t len = 0;
          char* at = l.cursor(&len);
          ssize_t k = ::recv(fds[i].fd, at, len, MSG_DONTWAIT);
          if (k > 0) err = l.moved(static_cast<size_t>(k));
          else if (k == 0) err = describe(*l.q[l.next], l.offset) + ": the peer closed the connection (did it exit or fail?)";
          else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            err = describe(*l.q[l.next], l.offset) + ": " + std::strerror(errno);
        } else if (fds[i].revents & (POLLHUP | POLLERR)) {
          err = "the connection to world rank " + std::to_string(p) + " broke (did it exit or fail?)";
        }
      }
      if (err.empty() && (fds[i].revents & POLLOUT) && !out[p].done()) {
        Lane& l = out[p];
        size_t len = 0;
        char* at = l.cursor(&len);
        ssize_t k = ::send(fds[i].fd, at, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0) err = l.moved(static_cast<size_t>(k));
        else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          err = describe(*l.q[l.next], l.offset) + ": " + std::strerror(errno);
      }
    }
    if (err.empty() && deadline.expired()) {
      std::ostringstream os;
      os << "timed out after " << deadline.elapsed_s() << " s (" << kTimeoutEnv << "=" << timeout_s
         << ") waiting for";
      const char* sep = " ";
      for (int p = 0; p < mesh.size; ++p) {
        for (Lane* l : {&in[p], &out[p]}) {
          if (l->done()) continue;
          os << sep << describe(*l->q[l->next], l->offset);
          sep = "; ";
        }
      }
      err = os.str();
    }
    if (!err.empty()) {
      if (mesh.poisoned.empty()) mesh.poisoned = err;
      return err;
    }
  }
}

}  // namespace ravensp::comm
