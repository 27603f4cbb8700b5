// Activation checkpointing for LibTorch: a custom autograd Node that keeps only
// the block input and reruns the block in backward (what torch.utils.checkpoint
// does with use_reentrant=True), restoring the forward's autocast state. The
// input can be kept in host memory instead (offload), trading a copy each way
// over PCIe for the largest activation a long-context step holds on the GPU.
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>

#include "model/layers.h"

namespace ravensp::model {
namespace {

struct AutocastState {
  bool enabled = false;
  at::ScalarType dtype = at::kBFloat16;
  at::DeviceType device = at::kCPU;
};

AutocastState capture(at::DeviceType dev) {
  return {at::autocast::is_autocast_enabled(dev), at::autocast::get_autocast_dtype(dev), dev};
}

struct AutocastRestore {
  explicit AutocastRestore(const AutocastState& s) : saved(capture(s.device)) {
    at::autocast::set_autocast_enabled(s.device, s.enabled);
    at::autocast::set_autocast_dtype(s.device, s.dtype);
  }
  ~AutocastRestore() {
    at::autocast::set_autocast_enabled(saved.device, saved.enabled);
    at::autocast::set_autocast_dtype(saved.device, saved.dtype);
  }
  AutocastState saved;
};

struct RecomputeBackward : public torch::autograd::Node {
  std::function<at::Tensor(const at::Tensor&)> fn;
  torch::autograd::SavedVariable input;
  at::Tensor host_input;  // offloaded: a host copy of the input, no autograd history
  at::Device device = at::kCPU;
  AutocastState autocast;

  std::string name() const override { return "ravensp::RecomputeBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    // The host-to-device copy is ordered on the current stream before the recompute.
    auto saved = host_input.defined() ? host_input.to(device, /*non_blocking=*/true) : input.unpack();
    auto x = saved.detach().requires_grad_(true);
    at::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      AutocastRestore restore(autocast);
      y = fn(x);
    }
    // Reentrant backward: accumulates into the parameters fn used, and into x.
    torch::autograd::backward({y}, {grads[0]});
    return {x.grad()};
  }

  void release_variables() override {
    input.reset_data();
    host_input = at::Tensor();
    fn = nullptr;
  }
};

}  // namespace

at::Tensor checkpointed(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x, bool offload) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  at::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = fn(x);
  }
  auto node = std::shared_ptr<RecomputeBackward>(new RecomputeBackward(),
                                                 torch::autograd::deleteNode);
  node->fn = std::move(fn);
  node->autocast = capture(x.device().type());
  if (offload) {
    // Pinned memory lets the device-to-host copy run asynchronously on the current
    // stream; the caching allocator only reuses x's memory after it on that stream.
    auto host = at::empty(x.sizes(), x.options().device(at::kCPU).pinned_memory(x.is_cuda()));
    host.copy_(x.detach(), /*non_blocking=*/x.is_cuda());
    node->host_input = host;
    node->device = x.device();
  } else {
    node->input = torch::autograd::SavedVariable(x, /*is_output=*/false);
  }
  node->set_next_edges(torch::autograd::collect_next_edges(x));
  torch::autograd::set_history(y, node);
  return y;
}

}  // namespace ravensp::model
