// C++ entry points of the ravensp torch ops (the same ops Python reaches as
// torch.ops.ravensp.*). Each call goes through the dispatcher, so it lands on
// the CPU or CUDA implementation of its inputs and on the autograd kernel when
// gradients are needed. Depends on LibTorch; used by csrc/sp, csrc/model and
// the launcher.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace ravensp::ops {

using OptTensor = std::optional<at::Tensor>;

// Differentiable gated slot attention, chunked form (DESIGN.md §3). Inputs
// [B, T, H, D]; states [N, H, K, M] and [N, H, M, V]. Returns (o, hkT, hvT);
// the final states are always computed (they are a by-product of the pass).
std::tuple<at::Tensor, at::Tensor, at::Tensor> gsa_chunk(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& s,
    const at::Tensor& g, double scale, const OptTensor& hk0 = std::nullopt,
    const OptTensor& hv0 = std::nullopt, const OptTensor& cu_seqlens = std::nullopt,
    int64_t chunk_size = 64);

// Differentiable token-by-token form (decoding, short inputs). Same contract.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gsa_recurrent(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& s,
    const at::Tensor& g, double scale, const OptTensor& hk0 = std::nullopt,
    const OptTensor& hv0 = std::nullopt, const OptTensor& cu_seqlens = std::nullopt);

// Low-level passes (no autograd).
// gsa_chunk_fwd returns (o, hkT, hvT, p, lse, states): p [B, T, H, M] and its
// rows' log-sum-exp lse [B, T, H] are what gsa_chunk_bwd needs (lse may be
// omitted there: the backward then recomputes the scores). With save_states the
// CUDA forward returns its chunk states (an opaque uint8 buffer, empty on CPU or
// without save_states); gsa_chunk_bwd given them does not recompute them.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gsa_chunk_fwd(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& s,
    const at::Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
    const OptTensor& cu_seqlens, int64_t chunk_size, bool save_states = false);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gsa_chunk_bwd(const at::Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
              const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& s,
              const at::Tensor& g, const at::Tensor& p, const OptTensor& lse, double scale,
              const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu_seqlens,
              int64_t chunk_size, const OptTensor& states = std::nullopt);

std::tuple<at::Tensor, at::Tensor, at::Tensor> gsa_recurrent_fwd(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& s,
    const at::Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
    const OptTensor& cu_seqlens);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gsa_recurrent_bwd(const at::Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
                  const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& s, const at::Tensor& g, double scale, const OptTensor& hk0,
                  const OptTensor& hv0, const OptTensor& cu_seqlens);

}  // namespace ravensp::ops
