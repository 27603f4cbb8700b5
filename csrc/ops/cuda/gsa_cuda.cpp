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
#include "ops/gsa_args.h"
#include "ops/op_boundary.h"
#include "ravensp/check.h"

namespace ravensp::ops {
namespace {

using Tensor = at::Tensor;
using OptTensor = std::optional<at::Tensor>;
using Fwd3 = std::tuple<Tensor, Tensor, Tensor>;
using Fwd4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;
using Bwd7 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

constexpr int64_t kCudaChunk = 64;

const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// Checks shared with the CPU path plus the CUDA table; fills the shape with
// device and host offsets.
GsaArgs check_cuda(const char* fn, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& s, const Tensor& g, const OptTensor& hk0, const OptTensor& hv0,
                   const OptTensor& cu, int64_t chunk_size, kernels::GsaShape& shape) {
  GsaArgs a = check_gsa_args(fn, q, k, v, s, g, hk0, hv0, cu);
  kernels::gsa_cuda_check_supported(fn, a.shape, to_kernel_dtype(q.scalar_type()), chunk_size);
  shape = a.shape;
  shape.cu_seqlens = a.cu_host.empty() ? nullptr : a.cu_dev.data_ptr<int64_t>();
  shape.cu_seqlens_host = a.cu_host.empty() ? nullptr : a.cu_host.data();
  return a;
}

Tensor workspace(size_t bytes, const Tensor& like) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

Fwd4 run_fwd(const char* fn, bool recurrent, const Tensor& q_, const Tensor& k_,
             const Tensor& v_, const Tensor& s_, const Tensor& g_, double scale,
             const OptTensor& hk0_, const OptTensor& hv0_, const OptTensor& cu,
             int64_t chunk_size) {
  kernels::GsaShape shape;
  GsaArgs a = check_cuda(fn, q_, k_, v_, s_, g_, hk0_, hv0_, cu, chunk_size, shape);
  const c10::cuda::CUDAGuard guard(q_.device());
  const Tensor q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous(),
               s = s_.contiguous(), g = g_.contiguous();
  const Tensor hk0 = state_or_undef(hk0_, at::kFloat), hv0 = state_or_undef(hv0_, at::kFloat);
  const auto f32 = q.options().dtype(at::kFloat);
  Tensor o = at::empty(v.sizes(), v.options());
  Tensor hkT = at::empty(hk_shape(a), f32), hvT = at::empty(hv_shape(a), f32);
  Tensor p = recurrent ? at::empty({0}, f32) : at::empty(s.sizes(), f32);
  kernels::GsaFwdParams P;
  P.shape = shape;
  P.dtype = to_kernel_dtype(q.scalar_type());
  P.accum_dtype = kernels::DType::kFloat32;
  P.scale = scale;
  P.chunk_size = kCudaChunk;
  P.q = q.data_ptr(); P.k = k.data_ptr(); P.v = v.data_ptr();
  P.s = s.data_ptr(); P.g = g.data_ptr();
  P.hk0 = ptr_or_null(hk0); P.hv0 = ptr_or_null(hv0);
  P.o = o.data_ptr(); P.p = recurrent ? nullptr : p.data_ptr();
  P.hkT = hkT.data_ptr(); P.hvT = hvT.data_ptr();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (recurrent) {
    Tensor ws = workspace(kernels::gsa_recurrent_fwd_workspace_bytes(P), q);
    kernels::gsa_recurrent_fwd_cuda(P, ws.data_ptr(), stream);
  } else {
    Tensor ws = workspace(kernels::gsa_chunk_fwd_workspace_bytes(P), q);
    kernels::gsa_chunk_fwd_cuda(P, ws.data_ptr(), stream);
  }
  return {o, hkT, hvT, p};
}

Bwd7 run_bwd(const char* fn, const Tensor& grad_o, const OptTensor& grad_hkT,
             const OptTensor& grad_hvT, const Tensor& q_, const Tensor& k_, const Tensor& v_,
             const Tensor& s_, const Tensor& g_, const Tensor* p_, double scale,
             const OptTensor& hk0_, const OptTensor& hv0_, const OptTensor& cu,
             int64_t chunk_size) {
  kernels::GsaShape shape;
  GsaArgs a = check_cuda(fn, q_, k_, v_, s_, g_, hk0_, hv0_, cu, chunk_size, shape);
  check_like(fn, "grad_o", grad_o, v_.sizes(), q_);
  if (p_ != nullptr) check_like(fn, "p", *p_, s_.sizes(), q_);
  if (grad_hkT.has_value() && grad_hkT->defined())
    check_like(fn, "grad_hkT", *grad_hkT, hk_shape(a), q_);
  if (grad_hvT.has_value() && grad_hvT->defined())
    check_like(fn, "grad_hvT", *grad_hvT, hv_shape(a), q_);
  const c10::cuda::CUDAGuard guard(q_.device());
  const auto dt = q_.scalar_type();
  const Tensor q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous(),
               s = s_.contiguous(), g = g_.contiguous(), dout = grad_o.to(dt).contiguous();
  const Tensor p = p_ != nullptr ? p_->to(at::kFloat).contiguous() : Tensor();
  const Tensor hk0 = state_or_undef(hk0_, at::kFloat), hv0 = state_or_undef(hv0_, at::kFloat);
  const Tensor dhkT = state_or_undef(grad_hkT, at::kFloat);
  const Tensor dhvT = state_or_undef(grad_hvT, at::kFloat);
  const auto f32 = q.options().dtype(at::kFloat);
  Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v),
         ds = at::empty_like(s), dg = at::empty_like(g);
  Tensor dhk0 = at::empty(hk_shape(a), f32), dhv0 = at::empty(hv_shape(a), f32);
  kernels::GsaBwdParams P;
  P.shape = shape;
  P.dtype = to_kernel_dtype(dt);
  P.accum_dtype = kernels::DType::kFloat32;
  P.scale = scale;
  P.chunk_size = kCudaChunk;
  P.q = q.data_ptr(); P.k = k.data_ptr(); P.v = v.data_ptr();
  P.s = s.data_ptr(); P.g = g.data_ptr(); P.p = ptr_or_null(p);
  P.hk0 = ptr_or_null(hk0); P.hv0 = ptr_or_null(hv0);
  P.d_o = dout.data_ptr(); P.dhkT = ptr_or_null(dhkT); P.dhvT = ptr_or_null(dhvT);
  P.dq = dq.data_ptr(); P.dk = dk.data_ptr(); P.dv = dv.data_ptr();
  P.ds = ds.data_ptr(); P.dg = dg.data_ptr();
  P.dhk0 = dhk0.data_ptr(); P.dhv0 = dhv0.data_ptr();
  Tensor ws = workspace(kernels::gsa_chunk_bwd_workspace_bytes(P), q);
  kernels::gsa_chunk_bwd_cuda(P, ws.data_ptr(), at::cuda::getCurrentCUDAStream());
  return {dq, dk, dv, ds, dg, dhk0, dhv0};
}

Fwd4 chunk_fwd_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                    const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                    const OptTensor& cu, int64_t chunk_size) {
  return run_fwd("gsa_chunk_fwd", false, q, k, v, s, g, scale, hk0, hv0, cu, chunk_size);
}

Bwd7 chunk_bwd_cuda(const Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                    const Tensor& g, const Tensor& p, double scale, const OptTensor& hk0,
                    const OptTensor& hv0, const OptTensor& cu, int64_t chunk_size) {
  return run_bwd("gsa_chunk_bwd", grad_o, grad_hkT, grad_hvT, q, k, v, s, g, &p, scale, hk0, hv0,
                 cu, chunk_size);
}

// The recurrent form has no chunk size; its forward is the token-by-token
// kernel, its backward the chunked backward (the same function), which
// recomputes p since the recurrent forward does not save it.
Fwd3 recurrent_fwd_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                        const Tensor& g, double scale, const OptTensor& hk0,
                        const OptTensor& hv0, const OptTensor& cu) {
  auto r = run_fwd("gsa_recurrent_fwd", true, q, k, v, s, g, scale, hk0, hv0, cu, kCudaChunk);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

Bwd7 recurrent_bwd_cuda(const Tensor& grad_o, const OptTensor& grad_hkT,
                        const OptTensor& grad_hvT, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& s, const Tensor& g, double scale,
                        const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu) {
  return run_bwd("gsa_recurrent_bwd", grad_o, grad_hkT, grad_hvT, q, k, v, s, g, nullptr, scale,
                 hk0, hv0, cu, kCudaChunk);
}

}  // namespace

TORCH_LIBRARY_IMPL(ravensp, CUDA, m) {
  m.impl("gsa_chunk_fwd", RAVENSP_OP(chunk_fwd_cuda));
  m.impl("gsa_chunk_bwd", RAVENSP_OP(chunk_bwd_cuda));
  m.impl("gsa_recurrent_fwd", RAVENSP_OP(recurrent_fwd_cuda));
  m.impl("gsa_recurrent_bwd", RAVENSP_OP(recurrent_bwd_cuda));
}

}  // namespace ravensp::ops
