// Device work issued on a second stream so that it overlaps what the caller
// issues meanwhile on its own: the SP GSA forward sends its states through it
// while the current stream computes the scores that need no incoming state.
// The side stream first waits for the current stream's work so far; join()
// makes the current stream wait for the side's and marks the tensors the side
// produced as used by the current stream (so the caching allocator does not
// hand their memory back to the side stream while they are still read). For
// CPU tensors, or a build without CUDA, run() is a plain call.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <utility>
#include <vector>

#if defined(RAVENSP_WITH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ravensp::sp {

class SideStream {
 public:
  explicit SideStream(const at::Device& device) {
#if defined(RAVENSP_WITH_CUDA)
    if (device.is_cuda()) {
      main_.emplace(c10::cuda::getCurrentCUDAStream(device.index()));
      // High priority: its few small kernels start as soon as an SM frees up
      // rather than after the compute kernels queued before them.
      side_.emplace(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index()));
      at::cuda::CUDAEvent ready;
      ready.record(*main_);
      ready.block(*side_);
    }
#endif
  }

  template <typename F>
  void run(F&& f) {
#if defined(RAVENSP_WITH_CUDA)
    if (side_) {
      const c10::cuda::CUDAStreamGuard guard(*side_);
      std::forward<F>(f)();
      return;
    }
#endif
    std::forward<F>(f)();
  }

  void join(const std::vector<at::Tensor>& produced) {
#if defined(RAVENSP_WITH_CUDA)
    if (!side_) return;
    at::cuda::CUDAEvent done;
    done.record(*side_);
    done.block(*main_);
    for (const at::Tensor& t : produced)
      if (t.defined()) t.record_stream(*main_);
#else
    (void)produced;
#endif
  }

 private:
#if defined(RAVENSP_WITH_CUDA)
  std::optional<c10::cuda::CUDAStream> main_, side_;
#endif
};

}  // namespace ravensp::sp
