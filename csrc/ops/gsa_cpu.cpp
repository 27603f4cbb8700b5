// CPU dispatch of the GSA passes: checks, conversion of half types to fp32
// (the CPU reference computes in the accumulation dtype), params, launch.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "kernels/gsa/params.h"
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

Tensor in_accum(const Tensor& t, at::ScalarType accum) { return t.to(accum).contiguous(); }

kernels::GsaShape host_shape(const GsaArgs& a) {
  kernels::GsaShape shape = a.shape;
  shape.cu_seqlens = a.cu_host.empty() ? nullptr : a.cu_host.data();
  shape.cu_seqlens_host = shape.cu_seqlens;
  return shape;
}

// The CPU reference computes in the accumulation dtype: inputs are converted.
GsaInputs accum_inputs(const GsaArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& s, const Tensor& g, const OptTensor& hk0,
                       const OptTensor& hv0) {
  const auto acc = a.accum;
  return {in_accum(q, acc), in_accum(k, acc), in_accum(v, acc), in_accum(s, acc),
          in_accum(g, acc), state_or_undef(hk0, acc), state_or_undef(hv0, acc)};
}

// Runs a forward pass; with_p selects whether p and lse are produced (chunked form).
// The reference keeps no chunk states: its backward recomputes them in full
// precision, so `states` comes back empty.
Fwd6 run_fwd(const char* fn, void (*launch)(const kernels::GsaFwdParams&), bool with_p,
             const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
             double scale, const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
             int64_t chunk_size) {
  GsaArgs a = check_gsa_args(fn, q, k, v, s, g, hk0, hv0, cu);
  RAVENSP_CHECK(chunk_size > 0, fn, ": chunk_size must be > 0, got ", chunk_size);
  GsaInputs in = accum_inputs(a, q, k, v, s, g, hk0, hv0);
  GsaFwdOutputs out = alloc_fwd_outputs(a, in, a.accum, with_p);
  launch(fwd_params(host_shape(a), in, out, a.accum, scale, chunk_size));
  return {out.o.to(q.scalar_type()), out.hkT, out.hvT, out.p, out.lse, out.states};
}

Bwd7 run_bwd(const char* fn, void (*launch)(const kernels::GsaBwdParams&), const Tensor& grad_o,
             const OptTensor& grad_hkT, const OptTensor& grad_hvT, const Tensor& q,
             const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
             const Tensor* p, const OptTensor& lse, double scale, const OptTensor& hk0,
             const OptTensor& hv0, const OptTensor& cu, int64_t chunk_size,
             const OptTensor& states) {
  GsaArgs a = check_gsa_args(fn, q, k, v, s, g, hk0, hv0, cu);
  RAVENSP_CHECK(chunk_size > 0, fn, ": chunk_size must be > 0, got ", chunk_size);
  check_bwd_args(fn, a, grad_o, p, lse, grad_hkT, grad_hvT, q, v, s);
  RAVENSP_CHECK(!states.has_value() || !states->defined() || states->numel() == 0, fn,
                ": states must be None or empty on CPU (the CPU forward keeps none; these are "
                "a CUDA forward's), got ", states->numel(), " bytes");
  const auto acc = a.accum;
  GsaInputs in = accum_inputs(a, q, k, v, s, g, hk0, hv0);
  GsaBwdOutputs out = alloc_bwd_outputs(a, in, acc);
  // The reference backward recomputes the scores in full precision; lse only
  // serves the CUDA kernels.
  launch(bwd_params(host_shape(a), in, p != nullptr ? in_accum(*p, acc) : Tensor(), Tensor(),
                    Tensor(), in_accum(grad_o, acc), state_or_undef(grad_hkT, acc),
                    state_or_undef(grad_hvT, acc), out, acc, scale, chunk_size));
  const auto dt = q.scalar_type();
  return {out.dq.to(dt), out.dk.to(dt), out.dv.to(dt), out.ds.to(dt), out.dg.to(dt), out.dhk0,
          out.dhv0};
}

Fwd6 chunk_fwd_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                   const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                   const OptTensor& cu, int64_t chunk_size, bool /*save_states*/) {
  return run_fwd("gsa_chunk_fwd", kernels::gsa_chunk_fwd_cpu, true, q, k, v, s, g, scale, hk0,
                 hv0, cu, chunk_size);
}

Bwd7 chunk_bwd_cpu(const Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                   const Tensor& g, const Tensor& p, const OptTensor& lse, double scale,
                   const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
                   int64_t chunk_size, const OptTensor& states) {
  return run_bwd("gsa_chunk_bwd", kernels::gsa_chunk_bwd_cpu, grad_o, grad_hkT, grad_hvT, q, k,
                 v, s, g, &p, lse, scale, hk0, hv0, cu, chunk_size, states);
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
                 q, k, v, s, g, nullptr, std::nullopt, scale, hk0, hv0, cu, 1, std::nullopt);
}

}  // namespace

TORCH_LIBRARY_IMPL(ravensp, CPU, m) {
  m.impl("gsa_chunk_fwd", RAVENSP_OP(chunk_fwd_cpu));
  m.impl("gsa_chunk_bwd", RAVENSP_OP(chunk_bwd_cpu));
  m.impl("gsa_recurrent_fwd", RAVENSP_OP(recurrent_fwd_cpu));
  m.impl("gsa_recurrent_bwd", RAVENSP_OP(recurrent_bwd_cpu));
}

}  // namespace ravensp::ops
