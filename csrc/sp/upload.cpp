// Implementation of the stall-free upload (see upload.h).
#include "sp/upload.h"

namespace ravensp::sp {

at::Tensor upload(const std::vector<int64_t>& values, const at::Device& device) {
  at::Tensor host = at::tensor(values, at::kLong);
  if (!device.is_cuda()) return host.to(device);
  // The caching host allocator keeps the pinned block until the copy has run.
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

}  // namespace ravensp::sp
