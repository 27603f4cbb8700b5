// Per-step output (internal to train/): the JSON-lines record, the progress bar
// on a terminal, peak memory, and the run summary.
#pragma once

#include <cstdio>
#include <string>

#include "ravensp/train.h"

namespace ravensp::train {

// Peak memory in GB: the CUDA caching allocator's peak on that device, else the
// process's maximum resident set size.
double peak_memory_gb(const at::Device& device);
void reset_peak_memory(const at::Device& device);

class ProgressBar {
 public:
  ProgressBar(bool enabled, int64_t total) : enabled_(enabled), total_(total) {}
  void update(const StepRecord& r);
  void finish();

 private:
  bool enabled_;
  int64_t total_;
};

}  // namespace ravensp::train
