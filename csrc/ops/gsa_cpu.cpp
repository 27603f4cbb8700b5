// CPU dispatch of the GSA passes: checks, conversion of half types to fp32
// (the CPU reference computes in the accumulation dtype), params, launch.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

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

Tensor in_accum(const Tensor& t, at::ScalarType accum) { return t.to(accum).contiguous(); }

const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

void fill_shape(kernels::GsaShape& shape, const GsaArgs& a) {
  shape = a.shape;
  shape.cu_seqlens = a.cu_host.empty() ? nullptr : a.cu_host.data();
  shape.cu_seqlens_host = shape.cu_seqlens;
}

// Runs a forward pass; with_p selects whether p is produced (chunked form).
Fwd4 run_fwd(const char* fn, void (*launch)(const kernels::GsaFwdParams&), bool with_p,
             const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
             double scale, const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
             int64_t chunk_size) {
  GsaArgs a = check_gsa_args(fn, q, k, v, s, g, hk0, hv0, cu);
  RAVENSP_CHECK(chunk_size > 0, fn, ": chunk_size must be > 0, got ", chunk_size);
  const auto acc = a.accum;
  Tensor qa = in_accum(q, acc), ka = in_accum(k, acc), va = in_accum(v, acc),
         sa = in_accum(s, acc), ga = in_accum(g, acc);
  Tensor hk = state_or_undef(hk0, acc), hv = state_or_undef(hv0, acc);
  Tensor o = at::empty(va.sizes(), va.options());
  Tensor hkT = at::empty(hk_shape(a), qa.options());
  Tensor hvT = at::empty(hv_shape(a), qa.options());
  Tensor p = with_p ? at::empty(sa.sizes(), sa.options()) : at::empty({0}, sa.options());
  kernels::GsaFwdParams P;
  fill_shape(P.shape, a);
  P.dtype = P.accum_dtype = to_kernel_dtype(acc);
  P.scale = scale;
  P.chunk_size = chunk_size;
  P.q = qa.data_ptr(); P.k = ka.data_ptr(); P.v = va.data_ptr();
  P.s = sa.data_ptr(); P.g = ga.data_ptr();
  P.hk0 = ptr_or_null(hk); P.hv0 = ptr_or_null(hv);
  P.o = o.data_ptr(); P.p = with_p ? p.data_ptr() : nullptr;
  P.hkT = hkT.data_ptr(); P.hvT = hvT.data_ptr();
  launch(P);
  return {o.to(q.scalar_type()), hkT, hvT, p};
}

Bwd7 run_bwd(const char* fn, void (*launch)(const kernels::GsaBwdParams&), const Tensor& grad_o,
             const OptTensor& grad_hkT, const OptTensor& grad_hvT, const Tensor& q,
             const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
             const Tensor* p, double scale, const OptTensor& hk0, const OptTensor& hv0,
             const OptTensor& cu, int64_t chunk_size) {
  GsaArgs a = check_gsa_args(fn, q, k, v, s, g, hk0, hv0, cu);
  RAVENSP_CHECK(chunk_size > 0, fn, ": chunk_size must be > 0, got ", chunk_size);
  check_like(fn, "grad_o", grad_o, v.sizes(), q);
  if (p != nullptr) check_like(fn, "p", *p, s.sizes(), q);
  if (grad_hkT.has_value() && grad_hkT->defined())
    check_like(fn, "grad_hkT", *grad_hkT, hk_shape(a), q);
  if (grad_hvT.has_value() && grad_hvT->defined())
    check_like(fn, "grad_hvT", *grad_hvT, hv_shape(a), q);
  const auto acc = a.accum;
  Tensor qa = in_accum(q, acc), ka = in_accum(k, acc), va = in_accum(v, acc),
         sa = in_accum(s, acc), ga = in_accum(g, acc), doa = in_accum(grad_o, acc);
  Tensor pa = p != nullptr ? in_accum(*p, acc) : Tensor();
  Tensor hk = state_or_undef(hk0, acc), hv = state_or_undef(hv0, acc);
  Tensor dhkT = state_or_undef(grad_hkT, acc), dhvT = state_or_undef(grad_hvT, acc);
  Tensor dq = at::empty_like(qa), dk = at::empty_like(ka), dv = at::empty_like(va),
         ds = at::empty_like(sa), dg = at::empty_like(ga);
  Tensor dhk0 = at::empty(hk_shape(a), qa.options()), dhv0 = at::empty(hv_shape(a), qa.options());
  kernels::GsaBwdParams P;
  fill_shape(P.shape, a);
  P.dtype = P.accum_dtype = to_kernel_dtype(acc);
  P.scale = scale;
  P.chunk_size = chunk_size;
  P.q = qa.data_ptr(); P.k = ka.data_ptr(); P.v = va.data_ptr();
  P.s = sa.data_ptr(); P.g = ga.data_ptr(); P.p = ptr_or_null(pa);
  P.hk0 = ptr_or_null(hk); P.hv0 = ptr_or_null(hv);
  P.d_o = doa.data_ptr(); P.dhkT = ptr_or_null(dhkT); P.dhvT = ptr_or_null(dhvT);
  P.dq = dq.data_ptr(); P.dk = dk.data_ptr(); P.dv = dv.data_ptr();
  P.ds = ds.data_ptr(); P.dg = dg.data_ptr();
  P.dhk0 = dhk0.data_ptr(); P.dhv0 = dhv0.data_ptr();
  launch(P);
  const auto dt = q.scalar_type();
  return {dq.to(dt), dk.to(dt), dv.to(dt), ds.to(dt), dg.to(dt), dhk0, dhv0};
}

Fwd4 chunk_fwd_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                   const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                   const OptTensor& cu, int64_t chunk_size) {
  return run_fwd("gsa_chunk_fwd", kernels::gsa_chunk_fwd_cpu, true, q, k, v, s, g, scale, hk0,
                 hv0, cu, chunk_size);
}

Bwd7 chunk_bwd_cpu(const Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                   const Tensor& g, const Tensor& p, double scale, const OptTensor& hk0,
                   const OptTensor& hv0, const OptTensor& cu, int64_t chunk_size) {
  return run_bwd("gsa_chunk_bwd", kernels::gsa_chunk_bwd_cpu, grad_o, grad_hkT, grad_hvT, q, k,
                 v, s, g, &p, scale, hk0, hv0, cu, chunk_size);
}

Fwd3 recurrent_fwd_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                       const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                       const OptTensor& cu) {
  auto r = run_fwd("gsa_recurrent_fwd", kernels::gsa_recurrent_fwd_cpu, false, q, k, v, s, g,
                   scale, hk0, hv0, cu, 1);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

Bwd7 recurrent_bwd_cpu(const Tensor& grad_o, const OptTensor& grad_hkT,
                       const OptTensor& grad_hvT, const Tensor& q, const Tensor& k,
                       const Tensor& v, const Tensor& s, const Tensor& g, double scale,
                       const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu) {
  return run_bwd("gsa_recurrent_bwd", kernels::gsa_recurrent_bwd_cpu, grad_o, grad_hkT, grad_hvT,
                 q, k, v, s, g, nullptr, scale, hk0, hv0, cu, 1);
}

}  // namespace

TORCH_LIBRARY_IMPL(ravensp, CPU, m) {
  m.impl("gsa_chunk_fwd", RAVENSP_OP(chunk_fwd_cpu));
  m.impl("gsa_chunk_bwd", RAVENSP_OP(chunk_bwd_cpu));
  m.impl("gsa_recurrent_fwd", RAVENSP_OP(recurrent_fwd_cpu));
  m.impl("gsa_recurrent_bwd", RAVENSP_OP(recurrent_bwd_cpu));
}

}  // namespace ravensp::ops
