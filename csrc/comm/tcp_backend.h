// The TCP-socket host backend: the CPU backend of torchrun-launched jobs, which
// have a TCP store but no MPI. Collectives are built from the mesh's concurrent
// point-to-point transfers; all_reduce gathers then reduces in rank order, so
// every rank gets bit-identical results.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/tcp_transfer.h"
#include "ravensp/comm.h"

namespace ravensp::comm {

class TcpCommunicator final : public Communicator {
 public:
  // members[i] is the world rank of group rank i; this process is members[index].
  TcpCommunicator(std::shared_ptr<TcpMesh> mesh, std::vector<int> members, int index, const std::string& name);

  int rank() const override { return index_; }
  int size() const override { return static_cast<int>(members_.size()); }
  Backend backend() const override { return Backend::kTcp; }
  DeviceType memory() const override { return DeviceType::kCPU; }

 protected:
  void all_gather_impl(const Buffer& send, const Buffer& recv) override;
  void all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp op) override;
  void broadcast_impl(const Buffer& buf, int root) override;
  void send_recv_impl(const std::vector<P2POp>& ops) override;
  void barrier_impl() override;
  std::unique_ptr<Communicator> split_impl(int color, int key, const std::string& name) override;

 private:
  Transfer xfer(bool send, int group_peer, void* data, size_t bytes) const;
  void run(const std::vector<Transfer>& xs, const std::string& op);
  void gather_bytes(const char* mine, char* all, size_t bytes, const std::string& op);

  std::shared_ptr<TcpMesh> mesh_;
  std::vector<int> members_;
  int index_;
};

}  // namespace ravensp::comm
