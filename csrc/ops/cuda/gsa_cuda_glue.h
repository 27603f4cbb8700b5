// What every CUDA entry of the GSA ops does before launching: the shared
// argument checks plus the CUDA shape table, the inputs as the kernels read
// them, and workspace from the caching allocator.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "kernels/gsa/gsa_cuda.h"
#include "ops/gsa_args.h"
#include "ops/gsa_params.h"

namespace ravensp::ops {

constexpr int64_t kCudaChunk = 64;

// Checks shared with the CPU path plus the CUDA table.
inline GsaArgs check_cuda(const char* fn, const at::Tensor& q, const at::Tensor& k,
                          const at::Tensor& v, const at::Tensor& s, const at::Tensor& g,
                          const std::optional<at::Tensor>& hk0,
                          const std::optional<at::Tensor>& hv0,
                          const std::optional<at::Tensor>& cu, int64_t chunk_size,
                          const std::vector<int64_t>* cu_host = nullptr) {
  GsaArgs a = check_gsa_args(fn, q, k, v, s, g, hk0, hv0, cu, cu_host);
  kernels::gsa_cuda_check_supported(fn, a.shape, to_kernel_dtype(q.scalar_type()), chunk_size);
  return a;
}

// The kernels' shape of checked args, pointing at their offsets (keep the args
// alive while it is used).
inline kernels::GsaShape cuda_shape(const GsaArgs& a) {
  kernels::GsaShape shape = a.shape;
  shape.cu_seqlens = a.cu_host.empty() ? nullptr : a.cu_dev.data_ptr<int64_t>();
  shape.cu_seqlens_host = a.cu_host.empty() ? nullptr : a.cu_host.data();
  return shape;
}

inline at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

// CUDA computes in the input dtype; the initial and final states it takes and
// returns are fp32.
inline GsaInputs device_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& s, const at::Tensor& g,
                               const std::optional<at::Tensor>& hk0,
                               const std::optional<at::Tensor>& hv0) {
  return {q.contiguous(), k.contiguous(), v.contiguous(), s.contiguous(), g.contiguous(),
          state_or_undef(hk0, at::kFloat), state_or_undef(hv0, at::kFloat)};
}

}  // namespace ravensp::ops
