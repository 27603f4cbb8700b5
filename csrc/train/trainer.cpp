// The training loop: micro-batches with gradient accumulation, bf16 autocast
// forward, chunked cross-entropy normalised by the global count of scored tokens,
// one gradient all-reduce over all ranks, clipping, AdamW, metrics, checkpoints.
#include <ATen/autocast_mode.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "train/loss.h"
#include "train/metrics.h"
#include "train/session.h"

namespace ravensp::train {
namespace {

// Python's torch.autocast(device, bfloat16) for the forward: weights stay fp32
// masters, matmuls run in bf16, norms and the GSA state in fp32.
class AutocastScope {
 public:
  AutocastScope(bool on, at::DeviceType dev) : on_(on), dev_(dev) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(dev_);
    prev_dtype_ = at::autocast::get_autocast_dtype(dev_);
    at::autocast::set_autocast_enabled(dev_, true);
    at::autocast::set_autocast_dtype(dev_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(dev_, prev_enabled_);
    at::autocast::set_autocast_dtype(dev_, prev_dtype_);
  }

 private:
  bool on_;
  at::DeviceType dev_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void barrier(Session& s) {
  if (s.host) s.host->barrier();
}

}  // namespace

RunResult run(const TrainConfig& cfg, std::shared_ptr<comm::Communicator> world) {
  auto sess = make_session(cfg, world);
  Session& s = *sess;
  RunResult result;
  result.start_step = s.start.step;
  result.params = model::count_parameters(*s.model);
  const bool lead = s.rank == 0;
  const int64_t L = s.ctx.positions.numel();
  const double flops_per_token = model::train_flops_per_token(cfg.model, cfg.seq_len);
  const double peak = cfg.peak_tflops > 0 ? cfg.peak_tflops * 1e12 : (s.device.is_cuda() ? 989e12 : 0);
  const bool bar_on = lead && (cfg.progress == "on" || (cfg.progress == "auto" && ::isatty(2)));

  std::ofstream jsonl;
  if (lead) {
    std::filesystem::create_directories(cfg.out_dir);
    auto mode = s.resumed_from.empty() ? std::ios::trunc : std::ios::app;
    jsonl.open(std::filesystem::path(cfg.out_dir) / "metrics.jsonl", std::ios::out | mode);
    std::cerr << "ravensp-train: " << result.params << " parameters, " << s.world << " rank(s) (dp "
              << s.dp_size << " x sp " << cfg.sp_size << ") on " << s.device
              << (s.resumed_from.empty() ? "" : ", resumed from " + s.resumed_from + " at step " +
                                                    std::to_string(s.start.step))
              << "\n";
  }
  ProgressBar bar(bar_on, cfg.steps);
  const bool autocast = cfg.precision == Precision::kBf16;

  for (int64_t step = s.start.step; step < cfg.steps; ++step) {
    const double t0 = now_s();
    s.comm_ns->store(0);
    reset_peak_memory(s.device);
    // The whole step's data first: the loss is normalised by the number of scored
    // targets over all micro-batches and ranks, so the summed gradient is exact.
    std::vector<MicroBatch> mbs;
    double local_scored = 0;
    for (int64_t k = 0; k < cfg.grad_accum; ++k) {
      mbs.push_back(make_micro_batch(*s.data, step * cfg.grad_accum + k, s.dp_rank, s.dp_size,
                                     cfg.micro_batch, s.ctx.positions));
      local_scored += static_cast<double>(mbs.back().scored);
    }
    std::vector<double> counts{local_scored};
    if (s.host) all_reduce_values(*s.host, counts);
    const double global_scored = std::max(1.0, counts[0]);

    double loss_sum = 0, correct = 0;
    for (auto& mb : mbs) {
      s.ctx.gumbel_step = step;
      s.ctx.rows = mb.rows;
      at::Tensor loss;
      {
        AutocastScope scope(autocast, s.device.type());
        auto h = s.model->forward(mb.inputs.to(s.device), s.ctx);
        auto lp = chunked_cross_entropy(h.reshape({-1, h.size(-1)}), s.model->head_weight(),
                                        mb.targets.to(s.device).reshape(-1), cfg.loss_chunk);
        loss = lp.loss_sum / global_scored;
        loss_sum += lp.loss_sum.item<double>();
        correct += static_cast<double>(lp.correct);
      }
      loss.backward();
    }
    if (s.dev_world) all_reduce_grads(*s.dev_world, s.params, 1.0);
    StepRecord r;
    r.step = step + 1;
    r.grad_norm = clip_grad_norm(s.params, cfg.grad_clip);
    r.lr = lr_at(step, cfg.steps, cfg.warmup_steps, cfg.lr, cfg.min_lr_ratio);
    s.opt->step(r.lr);
    s.opt->zero_grad();

    std::vector<double> sums{loss_sum, correct};
    if (s.host) all_reduce_values(*s.host, sums);
    if (s.device.is_cuda()) torch::cuda::synchronize(s.device.index());
    r.step_s = now_s() - t0;
    r.loss = sums[0] / global_scored;
    r.accuracy = sums[1] / global_scored;
    r.tokens_per_s_per_gpu = static_cast<double>(cfg.micro_batch * L * cfg.grad_accum) / r.step_s;
    r.mfu = peak > 0 ? flops_per_token * r.tokens_per_s_per_gpu / peak : -1;
    r.peak_mem_gb = peak_memory_gb(s.device);
    r.comm_ms = static_cast<double>(s.comm_ns->load()) * 1e-6;
    result.records.push_back(r);
    if (lead) {
      jsonl << r.to_json() << "\n" << std::flush;
      if (cfg.json_stdout) std::cout << r.to_json() << "\n" << std::flush;
      bar.update(r);
    }

    const bool last = step + 1 == cfg.steps;
    if ((cfg.ckpt_every > 0 && (step + 1) % cfg.ckpt_every == 0) || (last && cfg.save_final)) {
      ResumePoint at{step + 1, (step + 1) * cfg.grad_accum};
      if (lead) result.last_checkpoint = save_checkpoint(cfg.out_dir, *s.model, *s.opt, at, cfg.config_text);
      barrier(s);  // no rank runs ahead of a checkpoint it might need to resume from
    }
  }
  bar.finish();
  return result;
}

}  // namespace ravensp::train
