// TimedCommunicator, tensor buffers, the gradient all-reduce and the launch
// environment's world communicator (see dist.h, train.h).
#include "train/dist.h"

#include <chrono>

#include "ravensp/train.h"
#include "sp/comm_tensor.h"

namespace ravensp::train {
namespace {

struct Timer {
  explicit Timer(std::atomic<int64_t>& ns) : ns(ns), t0(std::chrono::steady_clock::now()) {}
  ~Timer() {
    ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
              .count();
  }
  std::atomic<int64_t>& ns;
  std::chrono::steady_clock::time_point t0;
};

}  // namespace

TimedCommunicator::TimedCommunicator(std::shared_ptr<comm::Communicator> inner,
                                     std::shared_ptr<std::atomic<int64_t>> ns)
    : comm::Communicator(inner->name()), inner_(std::move(inner)), ns_(std::move(ns)) {
  set_timeout(inner_->timeout_s());
}

void TimedCommunicator::synchronize() {
  Timer t(*ns_);
  inner_->synchronize();
}
void TimedCommunicator::all_gather_impl(const comm::Buffer& s, const comm::Buffer& r) {
  Timer t(*ns_);
  inner_->all_gather(s, r);
}
void TimedCommunicator::all_reduce_impl(const comm::Buffer& s, const comm::Buffer& r,
                                        comm::ReduceOp op) {
  Timer t(*ns_);
  inner_->all_reduce(s, r, op);
}
void TimedCommunicator::broadcast_impl(const comm::Buffer& b, int root) {
  Timer t(*ns_);
  inner_->broadcast(b, root);
}
void TimedCommunicator::send_recv_impl(const std::vector<comm::P2POp>& ops) {
  Timer t(*ns_);
  inner_->send_recv(ops);
}
void TimedCommunicator::barrier_impl() {
  Timer t(*ns_);
  inner_->barrier();
}
std::unique_ptr<comm::Communicator> TimedCommunicator::split_impl(int color, int key,
                                                                  const std::string& name) {
  auto sub = inner_->split(color, key, name);
  if (!sub) return nullptr;
  return std::make_unique<TimedCommunicator>(std::shared_ptr<comm::Communicator>(std::move(sub)), ns_);
}

comm::Buffer tensor_buffer(const at::Tensor& t) { return sp::to_buffer(t); }

void all_reduce_grads(comm::Communicator& c, const std::vector<at::Tensor>& params, double scale) {
  torch::NoGradGuard no_grad;
  if (params.empty()) return;
  std::vector<at::Tensor> flat;
  flat.reserve(params.size());
  for (const auto& p : params) {
    flat.push_back(p.grad().defined() ? p.grad().reshape(-1) : at::zeros({p.numel()}, p.options()));
  }
  auto buf = at::cat(flat).contiguous();
  if (c.size() > 1) {
    auto b = tensor_buffer(buf);
    c.all_reduce(b, b);
  }
  if (scale != 1.0) buf.mul_(scale);
  int64_t off = 0;
  for (const auto& p : params) {
    auto piece = buf.narrow(0, off, p.numel()).view(p.sizes());
    if (p.grad().defined()) p.grad().copy_(piece);
    else p.mutable_grad() = piece.clone();
    off += p.numel();
  }
}

void all_reduce_values(comm::Communicator& c, std::vector<double>& values) {
  if (c.size() <= 1 || values.empty()) return;
  auto b = comm::host_buffer(values.data(), values.size());
  c.all_reduce(b, b);
}

std::shared_ptr<comm::Communicator> init_world_from_env() {
  auto env = comm::detect_launch_env();
  switch (env.launcher) {
    case comm::Launcher::kMpi:
      RAVENSP_CHECK(comm::mpi_enabled(), "launched by mpirun/srun (rank ", env.rank, " of ",
                    env.world_size, ") but this build has no MPI backend (RAVENSP_WITH_MPI=OFF)");
      return comm::init_mpi_world();
    case comm::Launcher::kTorchrun:
      return comm::init_tcp_from_env();
    case comm::Launcher::kNone:
      return nullptr;
  }
  return nullptr;
}

}  // namespace ravensp::train
