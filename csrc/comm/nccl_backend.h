// The NCCL device backend: nonblocking communicators (init, split and group calls
// polled under the deadline), its own CUDA stream ordered with each caller's
// stream by events, and a watchdog that aborts the communicator when an enqueued
// operation does not finish in time.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "comm/deadline.h"
#include "comm/nccl_watchdog.h"
#include "ravensp/comm.h"

namespace ravensp::comm {

class NcclCommunicator final : public Communicator {
 public:
  static std::unique_ptr<NcclCommunicator> create(const NcclUniqueId& id, int rank, int size, int device,
                                                  const std::string& name);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Backend backend() const override { return Backend::kNccl; }
  DeviceType memory() const override { return DeviceType::kCUDA; }
  void synchronize() override;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

 protected:
  void all_gather_impl(const Buffer& send, const Buffer& recv) override;
  void all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp op) override;
  void broadcast_impl(const Buffer& buf, int root) override;
  void send_recv_impl(const std::vector<P2POp>& ops) override;
  void barrier_impl() override;
  std::unique_ptr<Communicator> split_impl(int color, int key, const std::string& name) override;

 private:
  NcclCommunicator(ncclComm_t comm, int device, const std::string& name);
  // Polls until `comm` leaves ncclInProgress; aborts it (and fails) on an error or
  // at the deadline. `peer` is what the op waits for, for the message.
  void wait_ready(ncclComm_t comm, const std::string& op, const Deadline& deadline);
  // Orders the comm stream after `caller`, runs `issue` inside an NCCL group on the
  // comm stream, then makes `caller` wait for it and hands the completion to the watchdog.
  void enqueue(const std::string& op, cudaStream_t caller, const std::function<ncclResult_t()>& issue);
  void check_cuda(cudaError_t e, const char* call, const std::string& op);
  void check_device(const Buffer& b, const char* op) const;
  void abort_now(const std::string& why);

  ncclComm_t comm_ = nullptr;
  int rank_ = 0;
  int size_ = 0;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  int* barrier_word_ = nullptr;  // device scratch for barrier()
  std::mutex mutex_;             // serializes enqueue and abort
  bool aborted_ = false;
  std::unique_ptr<NcclWatchdog> watchdog_;
};

}  // namespace ravensp::comm
