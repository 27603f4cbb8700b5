// A communicator that forwards every call to another and adds the call's wall
// time to a counter: the host time spent in collectives, which the launcher
// reports per step (comm_ms) and ravensp-bench per point. For the blocking host
// backends (MPI, TCP) that is the communication a rank waits for; for NCCL only
// the enqueue time, which is why the GPU figures also use baseline differences.
// Sub-groups split from it share its counter.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ravensp/comm.h"

namespace ravensp::comm {

class TimedCommunicator : public Communicator {
 public:
  explicit TimedCommunicator(std::shared_ptr<Communicator> inner,
                             std::shared_ptr<std::atomic<int64_t>> ns = nullptr);
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  Backend backend() const override { return inner_->backend(); }
  DeviceType memory() const override { return inner_->memory(); }
  void synchronize() override;
  double seconds() const { return static_cast<double>(ns_->load()) * 1e-9; }
  void reset() { ns_->store(0); }

 protected:
  void all_gather_impl(const Buffer& send, const Buffer& recv) override;
  void all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp op) override;
  void broadcast_impl(const Buffer& buf, int root) override;
  void send_recv_impl(const std::vector<P2POp>& ops) override;
  void barrier_impl() override;
  std::unique_ptr<Communicator> split_impl(int color, int key, const std::string& name) override;

 private:
  template <typename F>
  void timed(F&& f);
  std::shared_ptr<Communicator> inner_;
  std::shared_ptr<std::atomic<int64_t>> ns_;
};

}  // namespace ravensp::comm
