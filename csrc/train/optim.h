// AdamW over fp32 master weights with a per-parameter decay flag, and the
// warmup + cosine learning-rate schedule (internal to the train room).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ravensp::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// torch.optim.AdamW's update (decoupled decay, bias-corrected moments), written
// out so its state has stable names for checkpoints and Python.
class AdamW {
 public:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq;
    bool decay = true;
  };
  AdamW(std::vector<Slot> slots, AdamWOptions opt);
  void step(double lr);  // uses param.grad(); parameters without a gradient are skipped
  void zero_grad();
  int64_t steps() const { return step_; }
  void set_steps(int64_t s) { step_ = s; }
  std::vector<Slot>& slots() { return slots_; }

 private:
  std::vector<Slot> slots_;
  AdamWOptions opt_;
  int64_t step_ = 0;
};

// lr at optimizer step `step` (0-based): linear warmup over `warmup` steps, then
// cosine from peak to peak * min_ratio at `total`.
double lr_at(int64_t step, int64_t total, int64_t warmup, double peak, double min_ratio);

// Scales all gradients so their global L2 norm is at most max_norm (> 0); returns
// the norm before clipping. Gradients must already be identical on every rank.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace ravensp::train
