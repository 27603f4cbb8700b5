// The TCP-socket host backend; see tcp_backend.h. Also init_tcp, which wires the
// full mesh through a TcpStore: rank i connects to every lower rank and accepts
// every higher one.
#include "comm/tcp_backend.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "comm/host_reduce.h"

namespace ravensp::comm {

TcpCommunicator::TcpCommunicator(std::shared_ptr<TcpMesh> mesh, std::vector<int> members, int index,
                                 const std::string& name)
    : Communicator(name), mesh_(std::move(mesh)), members_(std::move(members)), index_(index) {}

Transfer TcpCommunicator::xfer(bool send, int group_peer, void* data, size_t bytes) const {
  return Transfer{send, members_[group_peer], group_peer, static_cast<char*>(data), bytes};
}

void TcpCommunicator::run(const std::vector<Transfer>& xs, const std::string& op) {
  if (!mesh_->poisoned.empty()) fail(op + ": the socket mesh is unusable after an earlier failure: " + mesh_->poisoned);
  std::string err = run_transfers(*mesh_, xs, Deadline(timeout_s()), timeout_s());
  if (!err.empty()) fail(op + ": " + err);
}

void TcpCommunicator::gather_bytes(const char* mine, char* all, size_t bytes, const std::string& op) {
  std::vector<Transfer> xs;
  for (int j = 0; j < size(); ++j) {
    if (j == index_) continue;
    xs.push_back(xfer(true, j, const_cast<char*>(mine), bytes));
    xs.push_back(xfer(false, j, all + j * bytes, bytes));
  }
  if (all + index_ * bytes != mine && bytes) std::memmove(all + index_ * bytes, mine, bytes);
  run(xs, op);
}

void TcpCommunicator::all_gather_impl(const Buffer& send, const Buffer& recv) {
  std::string op = "all_gather (" + std::to_string(send.count) + " x " + dtype_name(send.dtype) +
                   " per rank) with all ranks";
  gather_bytes(static_cast<const char*>(send.data), static_cast<char*>(recv.data), send.bytes(), op);
}

void TcpCommunicator::all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp rop) {
  std::string op = std::string("all_reduce (") + reduce_op_name(rop) + ", " + std::to_string(send.count) + " x " +
                   dtype_name(send.dtype) + ") with all ranks";
  size_t bytes = send.bytes();
  std::vector<char> all(bytes * size());
  gather_bytes(static_cast<const char*>(send.data), all.data(), bytes, op);
  // Reduce in rank order: the same sequence of roundings on every rank.
  if (bytes) std::memcpy(recv.data, all.data(), bytes);
  for (int j = 1; j < size(); ++j) host_reduce(recv.data, all.data() + j * bytes, send.count, send.dtype, rop);
}

void TcpCommunicator::broadcast_impl(const Buffer& buf, int root) {
  std::string op = "broadcast (" + std::to_string(buf.count) + " x " + dtype_name(buf.dtype) + " from root " +
                   std::to_string(root) + ")";
  std::vector<Transfer> xs;
  if (index_ == root) {
    for (int j = 0; j < size(); ++j)
      if (j != root) xs.push_back(xfer(true, j, buf.data, buf.bytes()));
  } else {
    xs.push_back(xfer(false, root, buf.data, buf.bytes()));
  }
  run(xs, op);
}

void TcpCommunicator::send_recv_impl(const std::vector<P2POp>& ops) {
  std::vector<Transfer> xs;
  for (const P2POp& p : ops) xs.push_back(xfer(p.kind == P2PKind::kSend, p.peer, p.buf.data, p.buf.bytes()));
  run(xs, "send_recv (" + std::to_string(ops.size()) + " ops)");
}

void TcpCommunicator::barrier_impl() {
  char mine = 1;
  std::vector<char> all(size());
  gather_bytes(&mine, all.data(), 1, "barrier with all ranks");
}

std::unique_ptr<Communicator> TcpCommunicator::split_impl(int color, int key, const std::string& name) {
  int32_t mine[2] = {color, key};
  std::vector<int32_t> all(2 * size());
  gather_bytes(reinterpret_cast<const char*>(mine), reinterpret_cast<char*>(all.data()), sizeof(mine),
               "split (color " + std::to_string(color) + ", key " + std::to_string(key) + ") with all ranks");
  if (color < 0) return nullptr;
  std::vector<std::tuple<int32_t, int, int>> group;  // (key, old rank, world rank)
  for (int j = 0; j < size(); ++j)
    if (all[2 * j] == color) group.emplace_back(all[2 * j + 1], j, members_[j]);
  std::sort(group.begin(), group.end());
  std::vector<int> members;
  int index = -1;
  for (auto& [k, old_rank, world] : group) {
    if (old_rank == index_) index = static_cast<int>(members.size());
    members.push_back(world);
  }
  return std::make_unique<TcpCommunicator>(mesh_, std::move(members), index, name);
}

std::unique_ptr<Communicator> init_tcp(TcpStore& store, int rank, int size, const std::string& name) {
  RAVENSP_CHECK(size > 0 && rank >= 0 && rank < size, "init_tcp: rank must be in [0, size), got rank ", rank,
                " size ", size);
  std::string who = "[tcp '" + name + "' rank " + std::to_string(rank) + "/" + std::to_string(size) + "]";
  auto mesh = std::make_shared<TcpMesh>();
  mesh->rank = rank;
  mesh->size = size;
  mesh->peers.resize(size);
  Socket listener = listen_any(0, SOMAXCONN);
  std::string prefix = "ravensp/tcp/" + name + "/";
  store.set(prefix + "addr/" + std::to_string(rank),
            store.local_address() + ":" + std::to_string(local_port(listener)));
  Deadline dl(store.timeout_s());
  int32_t hello[2] = {rank, size};
  for (int j = 0; j < rank; ++j) {
    std::string addr = store.get(prefix + "addr/" + std::to_string(j));
    size_t colon = addr.rfind(':');
    std::string what = who + " connecting to rank " + std::to_string(j) + " at " + addr;
    Socket s = connect_to(addr.substr(0, colon), std::stoi(addr.substr(colon + 1)), dl, what);
    send_all(s, hello, sizeof(hello), dl, what);
    mesh->peers[j] = std::move(s);
  }
  for (int n = rank + 1; n < size; ++n) {
    std::string what = who + " accepting a connection from a higher rank";
    Socket s = accept_one(listener, dl, what);
    int32_t theirs[2] = {-1, -1};
    recv_all(s, theirs, sizeof(theirs), dl, what);
    RAVENSP_CHECK(theirs[1] == size, who, " world sizes disagree: rank ", theirs[0], " says ", theirs[1],
                  ", this rank says ", size);
    RAVENSP_CHECK(theirs[0] > rank && theirs[0] < size && !mesh->peers[theirs[0]].valid(), who,
                  " unexpected hello from rank ", theirs[0]);
    mesh->peers[theirs[0]] = std::move(s);
  }
  std::vector<int> members(size);
  for (int j = 0; j < size; ++j) members[j] = j;
  auto comm = std::make_unique<TcpCommunicator>(mesh, std::move(members), rank, name);
  comm->barrier();  // every mesh link works before anyone returns
  return comm;
}

}  // namespace ravensp::comm
