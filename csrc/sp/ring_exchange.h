// One in-flight batch of ring sends/receives that overlaps the compute of the
// current step: on CUDA the batch runs on a side stream ordered by events with the
// compute stream; on host memory it runs on a helper thread (the host backends
// block until done), joined before the received blocks are read.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/Stream.h>

#include <future>
#include <optional>
#include <vector>

#include "ravensp/comm.h"

namespace ravensp::sp::ring {

comm::DType comm_dtype(at::ScalarType t);

class Exchange {
 public:
  Exchange(comm::Communicator& comm, const at::Device& device);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  void send(const at::Tensor& t, int peer);  // queue into the next batch
  void recv(const at::Tensor& t, int peer);
  // Issues the queued batch (nothing when empty); at most one batch is in flight.
  void start();
  // Blocks (host) or orders the compute stream (CUDA) after the batch in flight.
  void wait();

 private:
  comm::Buffer buffer(const at::Tensor& t) const;
  comm::Communicator& comm_;
  at::Device device_;
  std::vector<comm::P2POp> queued_;
  std::vector<at::Tensor> keep_queued_, keep_inflight_;  // alive until the batch is done
  bool inflight_ = false;
  std::future<void> host_;
  std::optional<c10::Stream> side_;
  std::optional<c10::Event> ready_, done_;
};

}  // namespace ravensp::sp::ring
