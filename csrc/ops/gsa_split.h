// The chunked GSA passes split at the initial state, for the SP op (DESIGN.md
// §4). A rank has to send its shard's end state before it can know the state
// entering the shard, and every chunk state is linear in that incoming state
// (backward: in the end-state gradient). So each pass runs in phases around
// the exchange:
//   forward:  begin (the constructor): end states from a zero initial state,
//             the payload to exchange;  overlap(): work that needs no incoming
//             state, issued while the exchange is in flight;  finish(incoming
//             states) -> o, p, lse.
//   backward: begin: the gradient at the initial state for a zero end-state
//             gradient, the payload;  overlap(): work that needs no end-state
//             gradient;  finish(end-state gradients) -> dq, dk, dv, ds, dg.
// On CUDA the phases are the fused passes' kernels reordered plus two small
// ones (kernels/gsa/gsa_cuda.h, SplitPhase): nothing is computed twice. Other
// devices run the reference op from zero, then again with the exchanged state:
// right by construction, twice the work, and there is nothing to overlap.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <tuple>
#include <utility>
#include <vector>

namespace ravensp::ops {

class GsaFwdSplit {
 public:
  virtual ~GsaFwdSplit() = default;
  // Each sequence's end state from a zero initial state: [N, H, K, M] and
  // [N, H, M, V] in the accumulation dtype.
  const at::Tensor& end_k() const { return end_k_; }
  const at::Tensor& end_v() const { return end_v_; }
  // Issues the work that needs no incoming state on the current stream.
  virtual void overlap() = 0;
  // hk_in [N, H, K, M], hv_in [N, H, M, V]: the state entering each sequence
  // (undefined: zero). Returns o (input dtype), p and its rows' log-sum-exp
  // lse (accumulation dtype), what the backward takes.
  virtual std::tuple<at::Tensor, at::Tensor, at::Tensor> finish(const at::Tensor& hk_in,
                                                                const at::Tensor& hv_in) = 0;

 protected:
  at::Tensor end_k_, end_v_;
};

// cu: int64 offsets of the packed sequences on the inputs' device (undefined:
// each batch row is one sequence), cu_host the same offsets on the host (empty
// when cu is undefined). Runs the begin phase.
std::unique_ptr<GsaFwdSplit> gsa_fwd_split(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& s,
                                           const at::Tensor& g, double scale,
                                           const at::Tensor& cu, const std::vector<int64_t>& cu_host,
                                           int64_t chunk_size);

using GsaGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

class GsaBwdSplit {
 public:
  virtual ~GsaBwdSplit() = default;
  // d(outputs)/d(initial state) for a zero end-state gradient, per sequence.
  const at::Tensor& grad_in_k() const { return grad_in_k_; }
  const at::Tensor& grad_in_v() const { return grad_in_v_; }
  // Issues the work that needs no end-state gradient on the current stream.
  virtual void overlap() = 0;
  // dhkT, dhvT: the gradient arriving at each sequence's end state (undefined:
  // zero). Returns dq, dk, dv, ds, dg in the input dtype.
  virtual GsaGrads finish(const at::Tensor& dhkT, const at::Tensor& dhvT) = 0;

 protected:
  at::Tensor grad_in_k_, grad_in_v_;
};

// p, lse: the forward's softmax probabilities and their rows' log-sum-exp (lse
// undefined: the scores are recomputed); hk0/hv0: the initial states the
// forward finished with (undefined: zero). Runs the begin phase.
std::unique_ptr<GsaBwdSplit> gsa_bwd_split(const at::Tensor& grad_o, const at::Tensor& q,
                                           const at::Tensor& k, const at::Tensor& v,
                                           const at::Tensor& s, const at::Tensor& g,
                                           const at::Tensor& p, const at::Tensor& lse,
                                           double scale, const at::Tensor& hk0,
                                           const at::Tensor& hv0, const at::Tensor& cu,
                                           const std::vector<int64_t>& cu_host,
                                           int64_t chunk_size);

#if defined(RAVENSP_WITH_CUDA)
// ops/cuda/gsa_split_cuda.cpp
std::unique_ptr<GsaFwdSplit> gsa_fwd_split_cuda(const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, const at::Tensor& s,
                                                const at::Tensor& g, double scale,
                                                const at::Tensor& cu, const std::vector<int64_t>& cu_host,
                                           int64_t chunk_size);
std::unique_ptr<GsaBwdSplit> gsa_bwd_split_cuda(const at::Tensor& grad_o, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& s, const at::Tensor& g,
                                                const at::Tensor& p, const at::Tensor& lse,
                                                double scale, const at::Tensor& hk0,
                                                const at::Tensor& hv0,
                                                const at::Tensor& cu, const std::vector<int64_t>& cu_host,
                                           int64_t chunk_size);
#endif

}  // namespace ravensp::ops
