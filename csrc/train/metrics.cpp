// JSON records, the progress bar and memory figures (see metrics.h).
#include "train/metrics.h"

#include <sys/resource.h>

#include <cmath>
#include <sstream>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define RAVENSP_HAVE_C10_CUDA 1
#endif

namespace ravensp::train {
namespace {

// Loss and gradient norm carry all 17 digits, so runs can be compared exactly
// from their logs; the rest are figures for people (7 digits).
void field(std::ostringstream& os, const char* name, double v, int digits = 7) {
  os << ", \"" << name << "\": ";
  os.precision(digits);
  if (std::isfinite(v)) os << v;
  else os << "null";
}

}  // namespace

std::string StepRecord::to_json() const {
  std::ostringstream os;
  os << "{\"step\": " << step;
  field(os, "loss", loss, 17);
  field(os, "accuracy", accuracy >= 0 ? accuracy : NAN);
  field(os, "lr", lr);
  field(os, "grad_norm", grad_norm, 17);
  field(os, "step_s", step_s);
  field(os, "tokens_per_s_per_gpu", tokens_per_s_per_gpu);
  field(os, "mfu", mfu >= 0 ? mfu : NAN);
  field(os, "peak_mem_gb", peak_mem_gb);
  field(os, "comm_ms", comm_ms);
  os << "}";
  return os.str();
}

double peak_memory_gb(const at::Device& device) {
#if defined(RAVENSP_HAVE_C10_CUDA)
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto& peak = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
    return static_cast<double>(peak) / 1e9;
  }
#endif
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) * 1024.0 / 1e9;  // ru_maxrss is in KiB on Linux
}

void reset_peak_memory(const at::Device& device) {
#if defined(RAVENSP_HAVE_C10_CUDA)
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
  (void)device;
}

void ProgressBar::update(const StepRecord& r) {
  if (!enabled_) return;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * r.step / std::max<int64_t>(1, total_));
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r[%s] %lld/%lld loss %.4f", bar.c_str(), static_cast<long long>(r.step),
               static_cast<long long>(total_), r.loss);
  if (r.accuracy >= 0) std::fprintf(stderr, " acc %.3f", r.accuracy);
  std::fprintf(stderr, " lr %.2e %.0f tok/s   ", r.lr, r.tokens_per_s_per_gpu);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (enabled_) std::fprintf(stderr, "\n");
}

}  // namespace ravensp::train
