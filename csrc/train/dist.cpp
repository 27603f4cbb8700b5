// Tensor buffers, the gradient all-reduce and the launch environment's world
// communicator (see dist.h, train.h).
#include "train/dist.h"

#include "ravensp/train.h"
#include "sp/comm_tensor.h"

namespace ravensp::train {

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
