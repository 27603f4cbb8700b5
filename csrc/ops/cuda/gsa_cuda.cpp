// CUDA dispatch of the GSA passes: the shared argument checks, the CUDA shape
// table, device guard and current stream, outputs and workspace from the
// caching allocator, then the torch-free kernels of csrc/kernels/gsa. bf16,
// fp16 and fp32 run natively; fp64 raises (the CPU ops handle it).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "kernels/gsa/gsa_cuda.h"
#include "kernels/gsa/params.h"
#include "ops/cuda/gsa_cuda_glue.h"
#include "ops/gsa_args.h"
#include "ops/gsa_params.h"
#include "ops/op_boundary.h"
#include "ravensp/check.h"

namespace ravensp::ops {
namespace {

using Tensor = at::Tensor;
using OptTensor = std::optional<at::Tensor>;
using Fwd3 = std::tuple<Tensor, Tensor, Tensor>;
using Fwd6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
using Bwd7 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// Bytes of the chunk states a forward of this call keeps for the backward.
int64_t saved_states_bytes(const kernels::GsaShape& shape, const Tensor& q) {
  return static_cast<int64_t>(
      kernels::gsa_chunk_saved_states_bytes(shape, to_kernel_dtype(q.scalar_type())));
}

Fwd6 run_fwd(const char* fn, bool recurrent, const Tensor& q_, const Tensor& k_,
             const Tensor& v_, const Tensor& s_, const Tensor& g_, double scale,
             const OptTensor& hk0_, const OptTensor& hv0_, const OptTensor& cu,
             int64_t chunk_size, bool save_states) {
  GsaArgs a = check_cuda(fn, q_, k_, v_, s_, g_, hk0_, hv0_, cu, chunk_size);
  const kernels::GsaShape shape = cuda_shape(a);
  const c10::cuda::CUDAGuard guard(q_.device());
  GsaInputs in = device_inputs(q_, k_, v_, s_, g_, hk0_, hv0_);
  GsaFwdOutputs out = alloc_fwd_outputs(a, in, at::kFloat, !recurrent,
                                        save_states ? saved_states_bytes(shape, in.q) : 0);
  kernels::GsaFwdParams P = fwd_params(shape, in, out, at::kFloat, scale, kCudaChunk);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (recurrent) {
    Tensor ws = workspace(kernels::gsa_recurrent_fwd_workspace_bytes(P), in.q);
    kernels::gsa_recurrent_fwd_cuda(P, ws.data_ptr(), stream);
  } else {
    Tensor ws = workspace(kernels::gsa_chunk_fwd_workspace_bytes(P), in.q);
    kernels::gsa_chunk_fwd_cuda(P, ws.data_ptr(), stream);
  }
  return {out.o, out.hkT, out.hvT, out.p, out.lse, out.states};
}

Bwd7 run_bwd(const char* fn, const Tensor& grad_o, const OptTensor& grad_hkT,
             const OptTensor& grad_hvT, const Tensor& q_, const Tensor& k_, const Tensor& v_,
             const Tensor& s_, const Tensor& g_, const Tensor* p_, const OptTensor& lse_,
             double scale, const OptTensor& hk0_, const OptTensor& hv0_, const OptTensor& cu,
             int64_t chunk_size, const OptTensor& states_) {
  GsaArgs a = check_cuda(fn, q_, k_, v_, s_, g_, hk0_, hv0_, cu, chunk_size);
  const kernels::GsaShape shape = cuda_shape(a);
  check_bwd_args(fn, a, grad_o, p_, lse_, grad_hkT, grad_hvT, q_, v_, s_);
  Tensor states;
  if (states_.has_value() && states_->defined() && states_->numel() > 0) {
    states = *states_;
    const int64_t want = saved_states_bytes(shape, q_);
    RAVENSP_CHECK(states.scalar_type() == at::kByte && states.dim() == 1 &&
                      states.numel() == want && states.device() == q_.device() &&
                      states.is_contiguous(),
                  fn, ": states must be the chunk states a forward of this call saved (",
                  want, " bytes, uint8 on ", q_.device(), "), got ", states.scalar_type(), " ",
                  states.sizes(), " on ", states.device());
  }
  const c10::cuda::CUDAGuard guard(q_.device());
  GsaInputs in = device_inputs(q_, k_, v_, s_, g_, hk0_, hv0_);
  GsaBwdOutputs out = alloc_bwd_outputs(a, in, at::kFloat);
  kernels::GsaBwdParams P = bwd_params(
      shape, in, p_ != nullptr ? p_->to(at::kFloat).contiguous() : Tensor(),
      lse_.has_value() && lse_->defined() ? lse_->to(at::kFloat).contiguous() : Tensor(),
      states, grad_o.to(q_.scalar_type()).contiguous(), state_or_undef(grad_hkT, at::kFloat),
      state_or_undef(grad_hvT, at::kFloat), out, at::kFloat, scale, kCudaChunk);
  Tensor ws = workspace(kernels::gsa_chunk_bwd_workspace_bytes(P), in.q);
  kernels::gsa_chunk_bwd_cuda(P, ws.data_ptr(), at::cuda::getCurrentCUDAStream());
  return {out.dq, out.dk, out.dv, out.ds, out.dg, out.dhk0, out.dhv0};
}

Fwd6 chunk_fwd_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                    const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                    const OptTensor& cu, int64_t chunk_size, bool save_states) {
  return run_fwd("gsa_chunk_fwd", false, q, k, v, s, g, scale, hk0, hv0, cu, chunk_size,
                 save_states);
}

Bwd7 chunk_bwd_cuda(const Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                    const Tensor& g, const Tensor& p, const OptTensor& lse, double scale,
                    const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
                    int64_t chunk_size, const OptTensor& states) {
  return run_bwd("gsa_chunk_bwd", grad_o, grad_hkT, grad_hvT, q, k, v, s, g, &p, lse, scale, hk0,
                 hv0, cu, chunk_size, states);
}

// The recurrent form has no chunk size; its forward is the token-by-token
// kernel, its backward the chunked backward (the same function), which
// recomputes p since the recurrent forward does not save it.
Fwd3 recurrent_fwd_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                        const Tensor& g, double scale, const OptTensor& hk0,
                        const OptTensor& hv0, const OptTensor& cu) {
  auto r =
      run_fwd("gsa_recurrent_fwd", true, q, k, v, s, g, scale, hk0, hv0, cu, kCudaChunk, false);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

Bwd7 recurrent_bwd_cuda(const Tensor& grad_o, const OptTensor& grad_hkT,
                        const OptTensor& grad_hvT, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& s, const Tensor& g, double scale,
                        const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu) {
  return run_bwd("gsa_recurrent_bwd", grad_o, grad_hkT, grad_hvT, q, k, v, s, g, nullptr,
                 std::nullopt, scale, hk0, hv0, cu, kCudaChunk, std::nullopt);
}

}  // namespace

TORCH_LIBRARY_IMPL(ravensp, CUDA, m) {
  m.impl("gsa_chunk_fwd", RAVENSP_OP(chunk_fwd_cuda));
  m.impl("gsa_chunk_bwd", RAVENSP_OP(chunk_bwd_cuda));
  m.impl("gsa_recurrent_fwd", RAVENSP_OP(recurrent_fwd_cuda));
  m.impl("gsa_recurrent_bwd", RAVENSP_OP(recurrent_bwd_cuda));
}

}  // namespace ravensp::ops
