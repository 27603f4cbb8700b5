// A communicator that forwards to another and adds up the wall time of every
// call (internal to csrc/bench): the SP group's host time in collectives. For the
// blocking host backends that is the communication a rank waits for; for NCCL
// only the enqueue time, which is why GPU figures use the baseline difference.
#pragma once

#include <atomic>
#include <memory>

#include "ravensp/comm.h"

namespace ravensp::bench {

class TimedComm : public comm::Communicator {
 public:
  explicit TimedComm(std::shared_ptr<comm::Communicator> inner);
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  comm::Backend backend() const override { return inner_->backend(); }
  comm::DeviceType memory() const override { return inner_->memory(); }
  void synchronize() override;
  double seconds() const { return double(ns_.load()) * 1e-9; }
  void reset() { ns_.store(0); }

 protected:
  void all_gather_impl(const comm::Buffer& send, const comm::Buffer& recv) override;
  void all_reduce_impl(const comm::Buffer& send, const comm::Buffer& recv, comm::ReduceOp op) override;
  void broadcast_impl(const comm::Buffer& buf, int root) override;
  void send_recv_impl(const std::vector<comm::P2POp>& ops) override;
  void barrier_impl() override;
  std::unique_ptr<comm::Communicator> split_impl(int color, int key, const std::string& name) override;

 private:
  template <typename F>
  void timed(F&& f);
  std::shared_ptr<comm::Communicator> inner_;
  std::atomic<int64_t> ns_{0};
};

// A one-rank host communicator (TCP backend, nothing leaves the process) for a
// lone process: the SP ops still run their exchange code path.
std::shared_ptr<comm::Communicator> single_rank_host();

}  // namespace ravensp::bench
