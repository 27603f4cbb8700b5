// Ring attention for the hybrid softmax layers (DESIGN.md §5): each rank keeps its
// queries, K/V blocks visit the ranks that need them in ring order, partial outputs
// merge by log-sum-exp in fp32. Part of the SP room: depends on ops (LibTorch),
// comm and the layouts of sp.h. The op is torch.ops.ravensp.ring_attention.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "ravensp/sp.h"

namespace ravensp::sp {

// Group handle 0 means "no SP group": the local shard is the whole sequence and
// no communicator is used (the single-device path of SPAttention).
inline constexpr int64_t kNoGroup = 0;

// q: [B, L, H, D]; k, v: [B, L, Hkv, D] (H % Hkv == 0), this rank's shard in
// `layout` of a global sequence of P*L tokens. causal: key j is visible to query i
// only if j <= i. window > 0: additionally i - j < window (|i - j| < window when not
// causal), FLA's window_size; window <= 0: no window. cu_seqlens: GLOBAL document
// offsets [N+1] (int32/int64, 0 .. P*L, non-decreasing), B == 1, equal on every
// rank; tokens attend only within their document. Returns o [B, L, H, D] in q's
// dtype. Differentiable (C++ autograd). Every argument is validated and compared
// across ranks before any K/V moves; a bad input raises on every rank.
at::Tensor ring_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          double scale, bool causal, int64_t window,
                          const std::optional<at::Tensor>& cu_seqlens, int64_t group,
                          Layout layout);

// The passes below autograd. fwd returns (o, lse): lse [B, H, L] is the natural
// log-sum-exp of each query's scores in fp32 (fp64 for fp64 inputs). bwd takes the
// forward's o and lse and returns (dq, dk, dv) in the inputs' dtypes.
std::tuple<at::Tensor, at::Tensor> ring_attention_fwd(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, bool causal,
    int64_t window, const std::optional<at::Tensor>& cu_seqlens, int64_t group, Layout layout);
std::tuple<at::Tensor, at::Tensor, at::Tensor> ring_attention_bwd(
    const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& o, const at::Tensor& lse, double scale, bool causal, int64_t window,
    const std::optional<at::Tensor>& cu_seqlens, int64_t group, Layout layout);

}  // namespace ravensp::sp
