// The ring loops of ring attention: forward (partial outputs merged by LSE) and
// backward (dK/dV partials sent back to the blocks' home ranks), each with the
// exchange of the next step overlapping the compute of the current one.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "ring_plan.h"

namespace ravensp::sp::ring {

// Ring steps s = 1..P-1 pair rank r with src = r - s (whose K/V it reads) and
// dst = r + s (which reads its K/V), mod P. Steps where no rank pair is visible
// are dropped on every rank (fully masked blocks, ranks out of a window's reach);
// every rank keeps the same list, so the i-th exchange batch is the same step on
// all of them (the backward's message matching depends on it).
struct Step {
  int s, src, dst;
  bool recv, send;  // recv: r reads src's block; send: dst reads r's block
};
std::vector<Step> active_steps(const Config& c);

// Inputs validated by the op; returns (o in q's dtype, lse [B, H, L] in acc dtype).
std::tuple<at::Tensor, at::Tensor> ring_forward(const Config& c, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v);
std::tuple<at::Tensor, at::Tensor, at::Tensor> ring_backward(
    const Config& c, const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& o, const at::Tensor& lse);

}  // namespace ravensp::sp::ring
