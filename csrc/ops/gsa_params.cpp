// Implementation of the shared GSA params filling (see gsa_params.h).
#include "ops/gsa_params.h"

#include "ravensp/check.h"

namespace ravensp::ops {
namespace {

const void* ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// What the forward and backward params share: the call's shape, dtypes, scale,
// chunk size and the inputs q, k, v, s, g, hk0, hv0.
template <typename Params>
Params with_inputs(const kernels::GsaShape& shape, const GsaInputs& in, at::ScalarType accum,
                   double scale, int64_t chunk_size) {
  Params P;
  P.shape = shape;
  P.dtype = to_kernel_dtype(in.q.scalar_type());
  P.accum_dtype = to_kernel_dtype(accum);
  P.scale = scale;
  P.chunk_size = chunk_size;
  P.q = in.q.data_ptr(); P.k = in.k.data_ptr(); P.v = in.v.data_ptr();
  P.s = in.s.data_ptr(); P.g = in.g.data_ptr();
  P.hk0 = ptr(in.hk0); P.hv0 = ptr(in.hv0);
  return P;
}

}  // namespace

GsaFwdOutputs alloc_fwd_outputs(const GsaArgs& a, const GsaInputs& in, at::ScalarType accum,
                                bool with_p, int64_t states_bytes) {
  const auto acc = in.q.options().dtype(accum);
  const auto rows = in.s.sizes().slice(0, in.s.dim() - 1);  // [B, T, H]
  return {at::empty(in.v.sizes(), in.v.options()), at::empty(hk_shape(a), acc),
          at::empty(hv_shape(a), acc), with_p ? at::empty(in.s.sizes(), acc) : at::empty({0}, acc),
          with_p ? at::empty(rows, acc) : at::empty({0}, acc),
          at::empty({states_bytes}, in.q.options().dtype(at::kByte))};
}

GsaBwdOutputs alloc_bwd_outputs(const GsaArgs& a, const GsaInputs& in, at::ScalarType accum) {
  const auto acc = in.q.options().dtype(accum);
  return {at::empty_like(in.q), at::empty_like(in.k), at::empty_like(in.v),
          at::empty_like(in.s), at::empty_like(in.g), at::empty(hk_shape(a), acc),
          at::empty(hv_shape(a), acc)};
}

kernels::GsaFwdParams fwd_params(const kernels::GsaShape& shape, const GsaInputs& in,
                                 const GsaFwdOutputs& out, at::ScalarType accum, double scale,
                                 int64_t chunk_size) {
  auto P = with_inputs<kernels::GsaFwdParams>(shape, in, accum, scale, chunk_size);
  P.o = out.o.data_ptr();
  P.p = out.p.numel() > 0 ? out.p.data_ptr() : nullptr;
  P.lse = out.lse.numel() > 0 ? out.lse.data_ptr() : nullptr;
  P.states = out.states.numel() > 0 ? out.states.data_ptr() : nullptr;
  P.hkT = out.hkT.data_ptr(); P.hvT = out.hvT.data_ptr();
  return P;
}

kernels::GsaBwdParams bwd_params(const kernels::GsaShape& shape, const GsaInputs& in,
                                 const at::Tensor& p, const at::Tensor& lse,
                                 const at::Tensor& states, const at::Tensor& d_o,
                                 const at::Tensor& dhkT,
                                 const at::Tensor& dhvT, const GsaBwdOutputs& out,
                                 at::ScalarType accum, double scale, int64_t chunk_size) {
  auto P = with_inputs<kernels::GsaBwdParams>(shape, in, accum, scale, chunk_size);
  P.p = ptr(p);
  P.lse = ptr(lse);
  P.states = states.defined() && states.numel() > 0 ? states.data_ptr() : nullptr;
  P.d_o = d_o.data_ptr(); P.dhkT = ptr(dhkT); P.dhvT = ptr(dhvT);
  P.dq = out.dq.data_ptr(); P.dk = out.dk.data_ptr(); P.dv = out.dv.data_ptr();
  P.ds = out.ds.data_ptr(); P.dg = out.dg.data_ptr();
  P.dhk0 = out.dhk0.data_ptr(); P.dhv0 = out.dhv0.data_ptr();
  return P;
}

void check_bwd_args(const char* fn, const GsaArgs& a, const at::Tensor& grad_o,
                    const at::Tensor* p, const std::optional<at::Tensor>& lse,
                    const std::optional<at::Tensor>& grad_hkT,
                    const std::optional<at::Tensor>& grad_hvT, const at::Tensor& q,
                    const at::Tensor& v, const at::Tensor& s) {
  check_like(fn, "grad_o", grad_o, v.sizes(), q);
  if (p != nullptr) check_like(fn, "p", *p, s.sizes(), q);
  if (lse.has_value() && lse->defined()) {
    RAVENSP_CHECK(p != nullptr, fn, ": lse is given without p");
    check_like(fn, "lse", *lse, s.sizes().slice(0, s.dim() - 1), q);
  }
  if (grad_hkT.has_value() && grad_hkT->defined())
    check_like(fn, "grad_hkT", *grad_hkT, hk_shape(a), q);
  if (grad_hvT.has_value() && grad_hvT->defined())
    check_like(fn, "grad_hvT", *grad_hvT, hv_shape(a), q);
}

}  // namespace ravensp::ops
