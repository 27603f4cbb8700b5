// The train room's view of the communicator: the timing wrapper (every collective's
// host time, SP exchanges included, feeds the comm_ms metric), tensor buffers and
// the data-parallel gradient all-reduce (internal to train/).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <memory>
#include <vector>

#include "ravensp/comm.h"
#include "ravensp/timed_comm.h"

namespace ravensp::train {

using comm::TimedCommunicator;  // include/ravensp/timed_comm.h

comm::Buffer tensor_buffer(const at::Tensor& t);  // contiguous float/double/int64 tensors

// Sums the gradients of `params` over `c` (one flat buffer, one all-reduce) and
// multiplies them by `scale`. Parameters without a gradient contribute zeros.
void all_reduce_grads(comm::Communicator& c, const std::vector<at::Tensor>& params, double scale);

// Sums a few doubles over the group (loss, counts).
void all_reduce_values(comm::Communicator& c, std::vector<double>& values);

}  // namespace ravensp::train
