// AdamW, the schedule and gradient clipping (see optim.h).
#include "train/optim.h"

#include <cmath>

namespace ravensp::train {

AdamW::AdamW(std::vector<Slot> slots, AdamWOptions opt) : slots_(std::move(slots)), opt_(opt) {
  for (auto& s : slots_) {
    s.exp_avg = torch::zeros_like(s.param);
    s.exp_avg_sq = torch::zeros_like(s.param);
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(step_));
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    if (s.decay && opt_.weight_decay > 0) s.param.mul_(1 - lr * opt_.weight_decay);
    s.exp_avg.lerp_(g, 1 - opt_.beta1);
    s.exp_avg_sq.mul_(opt_.beta2).addcmul_(g, g, 1 - opt_.beta2);
    auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(opt_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -lr / bc1);
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) s.param.mutable_grad() = at::Tensor();
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double peak, double min_ratio) {
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = std::max<int64_t>(1, total - warmup);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  const double floor = peak * min_ratio;
  return floor + 0.5 * (peak - floor) * (1 + std::cos(M_PI * progress));
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  at::Tensor total;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    auto sq = p.grad().to(at::kDouble).square().sum();
    total = total.defined() ? total + sq : sq;
  }
  if (!total.defined()) return 0.0;
  const double norm = std::sqrt(total.item<double>());
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

}  // namespace ravensp::train
