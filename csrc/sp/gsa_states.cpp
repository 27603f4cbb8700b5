// ATen implementation of the closed-form SP GSA pieces (see gsa_states.h).
#include "sp/gsa_states.h"

namespace ravensp::sp {
namespace {

// Inclusive prefix sum over the token dim (dim 0 of [T, H, M]). CUDA scans an
// outer dim with one thread per column, which at H*M = 256 columns took 10 ms per
// call at 64K tokens on an H100; scanning the innermost dim is a block-parallel
// scan, so the token dim is moved there first.
at::Tensor cumsum_tokens(const at::Tensor& x) {
  return x.movedim(0, -1).contiguous().cumsum(-1).movedim(-1, 0);
}

// R_t = sum_{j > t} g_j (exclusive suffix sum), computed from the end so its
// precision does not depend on the magnitude of the prefix sums.
at::Tensor suffix_log_decay(const at::Tensor& g) {
  return cumsum_tokens(g.flip(0)).flip(0) - g;
}

// grad += term, summed in term's (fp32) precision and rounded to grad's dtype once:
// adding a rounded term to a bf16 gradient rounds twice, and the decay parameters'
// gradients (sums over every token of dg) pick that up as a bias-free but larger
// error than the unsharded path's.
void add_rounded_once(at::Tensor& grad, const at::Tensor& term) {
  if (grad.scalar_type() == term.scalar_type()) {
    grad.add_(term);
  } else {
    grad.copy_(grad.to(term.scalar_type()).add_(term));
  }
}

}  // namespace

std::pair<at::Tensor, at::Tensor> piece_end_states(const at::Tensor& k, const at::Tensor& v,
                                                   const at::Tensor& s, const at::Tensor& g,
                                                   at::ScalarType accum) {
  at::Tensor w = s.to(accum) * suffix_log_decay(g.to(accum)).exp();  // [T, H, M]
  at::Tensor lk = at::einsum("thk,thm->hkm", {k.to(accum), w});
  at::Tensor lv = at::einsum("thm,thv->hmv", {w, v.to(accum)});
  return {lk, lv};
}

void add_final_state_grads(const at::Tensor& k, const at::Tensor& v, const at::Tensor& s,
                           const at::Tensor& g, const at::Tensor& h0k, const at::Tensor& h0v,
                           const at::Tensor& dHk, const at::Tensor& dHv, at::Tensor dk,
                           at::Tensor dv, at::Tensor ds, at::Tensor dg) {
  const auto acc = dHk.scalar_type();
  at::Tensor ka = k.to(acc), va = v.to(acc), sa = s.to(acc), ga = g.to(acc);
  at::Tensor e = suffix_log_decay(ga).exp();  // [T, H, M]
  at::Tensor w = sa * e;
  add_rounded_once(dk, at::einsum("hkm,thm->thk", {dHk, w}));
  add_rounded_once(dv, at::einsum("thm,hmv->thv", {w, dHv}));
  at::Tensor ds_corr =
      e * (at::einsum("hkm,thk->thm", {dHk, ka}) + at::einsum("hmv,thv->thm", {dHv, va}));
  add_rounded_once(ds, ds_corr);
  // dg_j = C0 + sum_{i < j} s_i ds_corr_i, C0 from the initial state's decay.
  at::Tensor c = sa * ds_corr;
  at::Tensor dgc = cumsum_tokens(c) - c;
  if (h0k.defined() || h0v.defined()) {
    at::Tensor decay = ga.sum(0).exp();  // [H, M]
    at::Tensor c0 = at::zeros_like(decay);
    if (h0k.defined()) c0 = c0 + (h0k.to(acc) * dHk).sum(1) * decay;
    if (h0v.defined()) c0 = c0 + (h0v.to(acc) * dHv).sum(2) * decay;
    dgc = dgc + c0.unsqueeze(0);
  }
  add_rounded_once(dg, dgc);
}

}  // namespace ravensp::sp
