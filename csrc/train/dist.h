// The train room's view of the communicator: a timing wrapper (every collective's
// host time, SP exchanges included, feeds the comm_ms metric), tensor buffers and
// the data-parallel gradient all-reduce (internal to train/).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <memory>
#include <vector>

#include "ravensp/comm.h"

namespace ravensp::train {

// Forwards every call to `inner` and adds its wall time (host side: for NCCL the
// enqueue time, for MPI/TCP the whole blocking call) to a shared counter.
class TimedCommunicator : public comm::Communicator {
 public:
  TimedCommunicator(std::shared_ptr<comm::Communicator> inner,
                    std::shared_ptr<std::atomic<int64_t>> ns);
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  comm::Backend backend() const override { return inner_->backend(); }
  comm::DeviceType memory() const override { return inner_->memory(); }
  void synchronize() override;
  double seconds() const { return static_cast<double>(ns_->load()) * 1e-9; }

 protected:
  void all_gather_impl(const comm::Buffer& send, const comm::Buffer& recv) override;
  void all_reduce_impl(const comm::Buffer& send, const comm::Buffer& recv, comm::ReduceOp op) override;
  void broadcast_impl(const comm::Buffer& buf, int root) override;
  void send_recv_impl(const std::vector<comm::P2POp>& ops) override;
  void barrier_impl() override;
  std::unique_ptr<comm::Communicator> split_impl(int color, int key, const std::string& name) override;

 private:
  std::shared_ptr<comm::Communicator> inner_;
  std::shared_ptr<std::atomic<int64_t>> ns_;
};

comm::Buffer tensor_buffer(const at::Tensor& t);  // contiguous float/double/int64 tensors

// Sums the gradients of `params` over `c` (one flat buffer, one all-reduce) and
// multiplies them by `scale`. Parameters without a gradient contribute zeros.
void all_reduce_grads(comm::Communicator& c, const std::vector<at::Tensor>& params, double scale);

// Sums a few doubles over the group (loss, counts).
void all_reduce_values(comm::Communicator& c, std::vector<double>& values);

}  // namespace ravensp::train
