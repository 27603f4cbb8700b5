// Closed-form pieces of the SP GSA math (DESIGN.md §4) in ATen, for one piece
// of tokens of one row ([T, H, D] slices): the end states it produces from a
// zero state, its total decay, and the gradient contributions of a gradient
// arriving at its final state (the part LASP-2 adds after the exchange).
#pragma once

#include <ATen/ATen.h>

namespace ravensp::sp {

// Per-head states of a segment: hk [B, H, K, M], hv [B, H, M, V], log decay [B, H, M].
struct SegState {
  at::Tensor hk, hv, logd;
};

// Lk = sum_t k_t (s_t e^{R_t})^T, Lv = sum_t (s_t e^{R_t}) v_t^T with R_t the
// log decay after t up to the piece end. Slices [T, H, *]; returns (Lk [H,K,M], Lv [H,M,V]).
std::pair<at::Tensor, at::Tensor> piece_end_states(const at::Tensor& k, const at::Tensor& v,
                                                   const at::Tensor& s, const at::Tensor& g,
                                                   at::ScalarType accum);

// Gradients of <H_T, dH_T> with H_T = h0 (x) e^{sum g} + (Lk, Lv) for one piece,
// added into dk, dv, ds, dg (slices [T, H, *], written in place). h0k/h0v may be
// undefined (zero initial state). dHk [H, K, M], dHv [H, M, V].
void add_final_state_grads(const at::Tensor& k, const at::Tensor& v, const at::Tensor& s,
                           const at::Tensor& g, const at::Tensor& h0k, const at::Tensor& h0v,
                           const at::Tensor& dHk, const at::Tensor& dHv, at::Tensor dk,
                           at::Tensor dv, at::Tensor ds, at::Tensor dg);

}  // namespace ravensp::sp
