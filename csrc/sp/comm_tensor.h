// at::Tensor -> comm::Buffer: the one place the SP room turns tensors into the
// torch-free buffers the Communicator moves (device, dtype, current stream).
#pragma once

#include <ATen/ATen.h>

#include "ravensp/check.h"
#include "ravensp/comm.h"

#if defined(RAVENSP_WITH_CUDA)
#include <c10/cuda/CUDAStream.h>
#endif

namespace ravensp::sp {

inline comm::DType comm_dtype(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return comm::DType::kFloat32;
    case at::kDouble: return comm::DType::kFloat64;
    case at::kBFloat16: return comm::DType::kBFloat16;
    case at::kHalf: return comm::DType::kFloat16;
    case at::kLong: return comm::DType::kInt64;
    case at::kInt: return comm::DType::kInt32;
    case at::kByte: return comm::DType::kUInt8;
    case at::kChar: return comm::DType::kInt8;
    default: break;
  }
  RAVENSP_CHECK(false, "no communicator dtype for ", st);
}

inline comm::Buffer to_buffer(const at::Tensor& t) {
  RAVENSP_CHECK(t.is_contiguous(), "communication buffers must be contiguous");
  comm::Buffer b;
  b.data = t.data_ptr();
  b.count = static_cast<size_t>(t.numel());
  b.dtype = comm_dtype(t.scalar_type());
  if (t.is_cuda()) {
#if defined(RAVENSP_WITH_CUDA)
    b.device = comm::Device{comm::DeviceType::kCUDA, t.get_device()};
    b.stream = c10::cuda::getCurrentCUDAStream(t.get_device()).stream();
#else
    RAVENSP_CHECK(false, "CUDA tensor given to a ravensp build without CUDA");
#endif
  }
  return b;
}

// The communicator must move the memory the tensors live in.
inline void check_group_memory(const char* fn, comm::Communicator& c, const at::Tensor& t) {
  const bool want_cuda = c.memory() == comm::DeviceType::kCUDA;
  RAVENSP_CHECK(t.is_cuda() == want_cuda, fn, ": the SP group ", c.who(), " moves ",
                want_cuda ? "CUDA" : "host", " memory but the inputs are on ", t.device(),
                "; use an NCCL group for CUDA tensors and an MPI/TCP group for CPU tensors");
}

}  // namespace ravensp::sp
