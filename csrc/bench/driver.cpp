// The sweep: context (device, dtype, communicators, the timed SP group), then for
// each workload and length: warm-up, timed repeats (slowest rank per repeat,
// median over repeats), the no-exchange baseline, memory, and the record.
#include <c10/util/Exception.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>

#include "ravensp/bench.h"
#include "ravensp/model.h"
#include "ravensp/sp.h"
#include "ravensp/timed_comm.h"
#include "single_rank.h"
#include "workloads.h"

#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define RAVENSP_HAVE_C10_CUDA 1
#endif

namespace ravensp::bench {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void sync(const Context& c) {
  if (c.device.is_cuda()) torch::cuda::synchronize(c.device.index());
}

// Peak memory of the point: the CUDA allocator's peak, or on CPU the peak RSS
// (VmHWM), which writing "5" to clear_refs resets (Linux >= 4.0).
void reset_peak(const Context& c) {
#if defined(RAVENSP_HAVE_C10_CUDA)
  if (c.device.is_cuda()) return c10::cuda::CUDACachingAllocator::resetPeakStats(c.device.index());
#endif
  std::ofstream("/proc/self/clear_refs") << "5";
}

double peak_gb(const Context& c) {
#if defined(RAVENSP_HAVE_C10_CUDA)
  if (c.device.is_cuda()) {
    auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(c.device.index());
    return double(st.allocated_bytes[size_t(c10::CachingAllocator::StatType::AGGREGATE)].peak) / 1e9;
  }
#endif
  std::ifstream f("/proc/self/status");
  std::string key;
  while (f >> key) {
    if (key == "VmHWM:") {
      double kb = 0;
      f >> kb;
      return kb * 1024 / 1e9;
    }
    f.ignore(1 << 16, '\n');
  }
  return 0;
}

// Element-wise max (or sum) of a few doubles over the world's ranks.
void reduce(const Context& c, std::vector<double>& v, comm::ReduceOp op) {
  if (!c.world_comm) return;
  auto b = comm::host_buffer(v.data(), v.size());
  c.world_comm->all_reduce(b, b, op);
}

void barrier(const Context& c) {
  if (c.world_comm) c.world_comm->barrier();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Timing {
  std::vector<double> step_s, comm_s;  // per timed repeat, max over ranks
};

// Runs fn warmup + repeats times; each repeat starts together on every rank and
// ends when the slowest rank ends.
Timing time_it(const Context& c, const std::function<void()>& fn) {
  Timing t;
  const int reps = c.opts.repeats;
  std::vector<double> mine(2 * reps);
  for (int i = 0; i < c.opts.warmup + reps; ++i) {
    barrier(c);
    sync(c);
    c.comm_reset();
    const double t0 = now_s();
    fn();
    sync(c);
    const double dt = now_s() - t0;
    if (i >= c.opts.warmup) {
      mine[i - c.opts.warmup] = dt;
      mine[reps + i - c.opts.warmup] = c.comm_seconds();
    }
  }
  reduce(c, mine, comm::ReduceOp::kMax);
  t.step_s.assign(mine.begin(), mine.begin() + reps);
  t.comm_s.assign(mine.begin() + reps, mine.end());
  return t;
}

Record train_step(const Context& c, int64_t T, Record r) {
  train::TrainConfig tc = c.opts.train;
  tc.seq_len = T;
  tc.sp_size = c.world;
  tc.micro_batch = 1;
  tc.grad_accum = 1;
  tc.steps = c.opts.warmup + c.opts.repeats;
  tc.precision = c.dtype == at::kBFloat16 ? train::Precision::kBf16
                 : c.dtype == at::kDouble ? train::Precision::kFp64 : train::Precision::kFp32;
  tc.device = c.device.is_cuda() ? "cuda" : "cpu";
  tc.layout = c.opts.layout == "zigzag" ? sp::Layout::kZigzag : sp::Layout::kContiguous;
  tc.threads = c.opts.threads;
  const char* tmp = std::getenv("TMPDIR");
  tc.out_dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/ravensp-bench-" + std::to_string(::getpid());
  tc.save_final = false;
  tc.ckpt_every = 0;
  tc.resume = "none";
  tc.progress = "off";
  tc.json_stdout = false;
  auto res = train::run(tc, c.world_comm);
  // The trainer leaves only metrics.jsonl there. Plain POSIX calls: std::filesystem's
  // remove_all resolves into libtorch's own copy, which crashes.
  if (c.rank == 0) {
    ::unlink((tc.out_dir + "/metrics.jsonl").c_str());
    ::rmdir(tc.out_dir.c_str());
  }
  std::vector<double> v;
  for (size_t i = c.opts.warmup; i < res.records.size(); ++i) {
    v.push_back(res.records[i].step_s);
    v.push_back(res.records[i].comm_ms * 1e-3);
  }
  v.push_back(peak_gb(c));  // this point's peak (the trainer's CPU figure is the process's)
  reduce(c, v, comm::ReduceOp::kMax);
  std::vector<double> steps, comms;
  for (size_t i = 0; i + 1 < v.size(); i += 2) steps.push_back(v[i]), comms.push_back(v[i + 1]);
  r.step_ms = median(steps) * 1e3;
  r.step_ms_min = *std::min_element(steps.begin(), steps.end()) * 1e3;
  r.step_ms_max = *std::max_element(steps.begin(), steps.end()) * 1e3;
  r.comm_host_ms = median(comms) * 1e3;
  r.exposed_comm_ms = r.comm_host_ms;
  r.exposed_comm_method = "host_time_in_collectives";
  r.peak_mem_gb = v.back();
  r.flops_per_rank = model::train_flops_per_token(tc.model, T) * r.tokens_per_rank;
  return r;
}

Record measure(const Context& c, const std::string& what, int64_t T) {
  Record r;
  r.what = what;
  r.world_size = c.world;
  r.seq_len = T;
  r.tokens_per_rank = T / c.world;
  r.layout = c.opts.layout;
  r.dtype = c.opts.dtype;
  r.device = c.device.is_cuda() ? "cuda" : "cpu";
  r.repeats = c.opts.repeats;
  r.warmup = c.opts.warmup;
  r.mem_kind = c.device.is_cuda() ? "cuda_peak_allocated" : "cpu_peak_rss";
  reset_peak(c);
  if (what == "train_step") {
    r = train_step(c, T, r);
  } else {
    Workload w = make_workload(c, what, T);
    Timing t = time_it(c, w.step);
    std::vector<double> mem{peak_gb(c)};
    reduce(c, mem, comm::ReduceOp::kMax);
    r.peak_mem_gb = mem[0];
    r.step_ms = median(t.step_s) * 1e3;
    r.step_ms_min = *std::min_element(t.step_s.begin(), t.step_s.end()) * 1e3;
    r.step_ms_max = *std::max_element(t.step_s.begin(), t.step_s.end()) * 1e3;
    r.comm_host_ms = median(t.comm_s) * 1e3;
    r.exposed_comm_method = w.comm_method;
    if (w.local) {
      r.local_ms = median(time_it(c, w.local).step_s) * 1e3 * w.local_scale;
      r.exposed_comm_ms = std::max(0.0, r.step_ms - r.local_ms);
    } else {
      r.exposed_comm_ms = r.comm_host_ms;
    }
    r.flops_per_rank = w.flops;
  }
  r.comm_share = r.step_ms > 0 ? r.exposed_comm_ms / r.step_ms : 0;
  r.tokens_per_s_per_rank = r.tokens_per_rank / (r.step_ms * 1e-3);
  r.tflops_per_rank = r.flops_per_rank / (r.step_ms * 1e-3) / 1e12;
  return r;
}

bool is_oom(const std::string& msg) {
  return msg.find("out of memory") != std::string::npos || msg.find("OutOfMemory") != std::string::npos ||
         msg.find("bad_alloc") != std::string::npos;
}

}  // namespace

std::vector<Record> run(const Options& o, std::shared_ptr<comm::Communicator> world,
                        const PointCallback& on_point) {
  Context c;
  c.opts = o;
  c.world_comm = world;
  c.rank = world ? world->rank() : 0;
  c.world = world ? world->size() : 1;
  const bool cuda = o.device == "cuda" || (o.device == "auto" && torch::cuda::is_available());
  RAVENSP_CHECK(!cuda || torch::cuda::is_available(), "--device=cuda but no CUDA device is visible");
  if (cuda) {
    c.device = at::Device(at::kCUDA, c10::DeviceIndex(comm::detect_launch_env().local_rank % torch::cuda::device_count()));
    // The CUDA caching allocator sizes its per-device tables on first use: reading or
    // resetting its peak before any allocation throws "Invalid device argument".
    at::empty({1}, at::TensorOptions().device(c.device));
  }
  c.dtype = o.dtype == "bf16" ? at::kBFloat16 : o.dtype == "fp64" ? at::kDouble : at::kFloat;
  if (o.threads > 0) at::set_num_threads(o.threads);
  const int64_t per = o.layout == "zigzag" ? 2 * c.world : c.world;
  for (int64_t T : sweep_lengths(o))
    RAVENSP_CHECK(T % per == 0, "--seq ", T, " must be divisible by ", per, " (", c.world, " ranks, ",
                  o.layout, " layout)");
  // The SP group: the world itself (NCCL on GPUs), wrapped to time every collective.
  std::shared_ptr<comm::Communicator> base = world;
  if (!base) base = single_rank_host();
  if (cuda) base = comm::init_nccl(*base, c.device.index());
  auto timed = std::make_shared<comm::TimedCommunicator>(base);
  c.sp_comm = timed;
  c.comm_seconds = [timed] { return timed->seconds(); };
  c.comm_reset = [timed] { timed->reset(); };
  c.group = sp::register_group(timed);
  // The host world carries the shape handshakes (sp::set_control_group).
  if (cuda && world && world->memory() == comm::DeviceType::kCPU) sp::set_control_group(c.group, world);

  std::vector<Record> out;
  for (const auto& what : o.what)
    for (int64_t T : sweep_lengths(o)) {
      Record r;
      std::string err;
      try {
        r = measure(c, what, T);
      } catch (const c10::Error& e) {
        err = e.what_without_backtrace();
      } catch (const std::exception& e) {
        err = e.what();
      }
      // Every rank learns whether any rank failed, so all record the same status.
      std::vector<double> failed{err.empty() ? 0.0 : 1.0};
      reduce(c, failed, comm::ReduceOp::kMax);
      if (failed[0] > 0) {
        r = Record{};
        r.what = what, r.world_size = c.world, r.seq_len = T, r.tokens_per_rank = T / c.world;
        r.layout = o.layout, r.dtype = o.dtype, r.device = cuda ? "cuda" : "cpu";
        r.status = is_oom(err) ? "oom" : "error";
        r.error = err.empty() ? "failed on another rank" : err.substr(0, 300);
#if defined(RAVENSP_HAVE_C10_CUDA)
        if (cuda) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
      }
      if (c.rank == 0)
        std::fprintf(stderr, "ravensp-bench: %s T=%lld P=%d: %s %.3f ms, %.0f tokens/s/rank, exposed comm %.3f ms, peak %.3f GB\n",
                     what.c_str(), (long long)T, c.world, r.status.c_str(), r.step_ms, r.tokens_per_s_per_rank,
                     r.exposed_comm_ms, r.peak_mem_gb);
      out.push_back(r);
      if (on_point) on_point(out);
    }
  sp::unregister_group(c.group);
  return out;
}

}  // namespace ravensp::bench
