// The TCP backend's progress engine: a full mesh of sockets (one per peer pair)
// and run_transfers(), which drives a batch of sends and receives concurrently
// with poll() until all are done, a peer fails, or the deadline passes.
#pragma once

#include <string>
#include <vector>

#include "comm/deadline.h"
#include "comm/socket.h"

namespace ravensp::comm {

// Connected sockets to every other world rank, shared by a world communicator and
// every group split from it. Once a transfer fails, stray bytes may sit in the
// streams, so the whole mesh is poisoned.
struct TcpMesh {
  int rank = 0;
  int size = 0;
  std::vector<Socket> peers;  // peers[rank] stays invalid
  std::string poisoned;
};

struct Transfer {
  bool send;
  int peer;         // world rank: selects the socket
  int group_peer;   // rank in the calling group: named in errors
  char* data;
  size_t bytes;
};

// Transfers with the same peer and direction run in list order; all else runs
// concurrently, so rings and all-to-all patterns cannot deadlock. Transfers to
// oneself are matched send-to-recv in order and copied. Each message carries its
// length, so sizes that disagree between ranks are reported. Returns "" on success,
// else the error (naming the peers still pending); the mesh is then poisoned.
std::string run_transfers(TcpMesh& mesh, const std::vector<Transfer>& xs, const Deadline& deadline,
                          double timeout_s);

}  // namespace ravensp::comm
