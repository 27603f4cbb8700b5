// Chunked GSA backward on CUDA: the chunk-start states (the forward's, when it
// kept them, else recomputed: local states + forward scan, or the walk),
// per-chunk du, the end-state gradients (a reverse walk, or local state
// gradients and a reverse scan), then per chunk the intra-chunk ds and pair
// matrices, the state part of ds and dg, and dq/dk/dv. When p is not given
// (the recurrent op's backward), pass 1 of the forward recomputes it first.
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_cuda.h"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels {
namespace {

// p_ws / lse_ws: where pass 1 recomputes p and its row log-sum-exp when the
// forward saved no p (the recurrent op's backward) or no lse; nullptr otherwise.
// walk_back: room for the reverse walk's operands where it runs (not in the
// split backward, whose end-state gradients arrive after the local ones).
gsa_cuda::Plan carve_bwd(const GsaBwdParams& P, gsa_cuda::Carver& c, gsa_cuda::BwdBufs& b,
                         float** p_ws, float** lse_ws, bool walk_back) {
  gsa_cuda::Plan pl = gsa_cuda::make_plan(P.shape, P.dtype);
  // The forward's states, when kept, are read only from here on.
  gsa_cuda::carve_plan(pl, c, const_cast<void*>(P.states), &b.fin_k, &b.fin_v);
  if (P.states == nullptr) {
    b.fin_k = c.take<float>(pl.N * pl.H * pl.K * pl.M);
    b.fin_v = c.take<float>(pl.N * pl.H * pl.M * pl.V);
  }
  b.dhk = c.take_raw(pl.NC * pl.H * pl.K * pl.M, gsa_cuda::state_bytes(pl.dtype));
  b.dhv = c.take_raw(pl.NC * pl.H * pl.M * pl.V, gsa_cuda::state_bytes(pl.dtype));
  b.du = c.take<float>(pl.tokens * pl.H * pl.M);
  b.dgca = c.take<float>(pl.tokens * pl.H * pl.M);
  const int64_t pairs = pl.NC * pl.H * gsa_cuda::kChunk * gsa_cuda::kChunk;
  b.bm = c.take<float>(pairs);
  b.a2 = c.take<float>(pairs);
  // bwd_scores rebuilds the scores from p and lse: without both, pass 1 makes them.
  const bool recompute = P.p == nullptr || P.lse == nullptr;
  *p_ws = recompute ? c.take<float>(pl.tokens * pl.H * pl.M) : nullptr;
  *lse_ws = recompute ? c.take<float>(pl.tokens * pl.H) : nullptr;
  if (walk_back && gsa_cuda::use_reverse_walk(pl)) {
    b.ow = c.take_raw(pl.tokens * pl.H * pl.M, gsa_cuda::state_bytes(pl.dtype));
    b.pw = c.take_raw(pl.tokens * pl.H * pl.M, gsa_cuda::state_bytes(pl.dtype));
  }
  return pl;
}

}  // namespace

size_t gsa_chunk_bwd_workspace_bytes(const GsaBwdParams& P) {
  gsa_cuda::Carver c(nullptr);
  gsa_cuda::BwdBufs b;
  float *p_ws = nullptr, *lse_ws = nullptr;
  carve_bwd(P, c, b, &p_ws, &lse_ws, true);
  return c.bytes();
}

namespace {

void check_bwd(const char* fn, const GsaBwdParams& P) {
  gsa_cuda_check_supported(fn, P.shape, P.dtype, P.chunk_size);
  RAVENSP_CHECK(P.accum_dtype == DType::kFloat32, fn, ": CUDA accumulates in float32, got accum "
                "dtype ", dtype_name(P.accum_dtype));
  RAVENSP_CHECK(P.d_o && P.dq && P.dk && P.dv && P.ds && P.dg, fn,
                ": d_o and the gradients dq, dk, dv, ds, dg must be non-null");
  gsa_cuda::check_state_route();
}

// Up to the end-state gradients: the forward's chunk states from hk0/hv0 (unless
// the forward kept them), p (and its log-sum-exp) when the forward did not save
// it, du, then the end-state gradients from end_k, end_v (nullptr = zero): by the
// reverse walk where carve_bwd made room for its operands (b.ow), else as local
// state gradients and a reverse scan. Returns p.
const float* bwd_front(const gsa_cuda::Plan& pl, const GsaBwdParams& P,
                       const gsa_cuda::BwdBufs& b, float* p_ws, float* lse_ws,
                       const float* end_k, const float* end_v, float* gcum,
                       cudaStream_t stream) {
  gsa_cuda::launch_chunk_map(pl, stream);
  if (P.states == nullptr)  // else the forward kept them
    gsa_cuda::launch_chunk_states(pl, P.k, P.v, P.s, P.g, static_cast<const float*>(P.hk0),
                                  static_cast<const float*>(P.hv0), b.fin_k, b.fin_v,
                                  b.dgca /* written by bwd_scores later */, stream);
  const float* p = static_cast<const float*>(P.p);
  const float* lse = static_cast<const float*>(P.lse);
  if (p_ws != nullptr) {  // carve_bwd gave pass 1 room: the caller lacks p or lse
    GsaFwdParams F;
    F.shape = P.shape;
    F.dtype = P.dtype;
    F.accum_dtype = P.accum_dtype;
    F.scale = P.scale;
    F.chunk_size = P.chunk_size;
    F.q = P.q; F.k = P.k; F.v = P.v; F.s = P.s; F.g = P.g;
    F.lse = lse_ws;
    gsa_cuda::launch_pass1(pl, F, p_ws, stream);
    p = p_ws;
    lse = lse_ws;
  }
  gsa_cuda::launch_bwd_scores(pl, P, p, lse, b, stream);
  if (b.ow != nullptr)
    gsa_cuda::launch_reverse_walk(pl, P.q, P.d_o, b.ow, b.pw, end_k, end_v,
                                  static_cast<float*>(P.dhk0), static_cast<float*>(P.dhv0), b.dhk,
                                  b.dhv, stream);
  else
    gsa_cuda::launch_combine(pl, true, b.dhk, b.dhv, end_k, end_v, static_cast<float*>(P.dhk0),
                             static_cast<float*>(P.dhv0), stream, gcum);
  return p;
}

}  // namespace

void gsa_chunk_bwd_cuda(const GsaBwdParams& P, void* workspace, cudaStream_t stream) {
  check_bwd("gsa_chunk_bwd", P);
  gsa_cuda::Carver c(workspace);
  gsa_cuda::BwdBufs b;
  float *p_ws = nullptr, *lse_ws = nullptr;
  gsa_cuda::Plan pl = carve_bwd(P, c, b, &p_ws, &lse_ws, true);
  const float* p = bwd_front(pl, P, b, p_ws, lse_ws, static_cast<const float*>(P.dhkT),
                             static_cast<const float*>(P.dhvT), nullptr, stream);
  gsa_cuda::launch_bwd_pairs(pl, P, p, b, stream);
  gsa_cuda::launch_bwd_ds_state(pl, P, b, stream);
  gsa_cuda::launch_bwd_dqkv(pl, P, b, gsa_cuda::DqkvPart::kAll, stream);
}

size_t gsa_chunk_bwd_split_workspace_bytes(const GsaBwdParams& P) {
  gsa_cuda::Carver c(nullptr);
  gsa_cuda::BwdBufs b;
  float *p_ws = nullptr, *lse_ws = nullptr;
  gsa_cuda::Plan pl = carve_bwd(P, c, b, &p_ws, &lse_ws, false);
  c.take<float>(pl.NC * pl.H * pl.M);
  return c.bytes();
}

void gsa_chunk_bwd_split_cuda(const GsaBwdParams& P, SplitPhase phase, void* workspace,
                              cudaStream_t stream) {
  check_bwd("gsa_chunk_bwd (split)", P);
  RAVENSP_CHECK(P.states == nullptr, "gsa_chunk_bwd (split): the split forward keeps no states; "
                "states must be null");
  gsa_cuda::Carver c(workspace);
  gsa_cuda::BwdBufs b;
  float *p_ws = nullptr, *lse_ws = nullptr;
  gsa_cuda::Plan pl = carve_bwd(P, c, b, &p_ws, &lse_ws, false);
  float* gcum = c.take<float>(pl.NC * pl.H * pl.M);
  const float* p = P.p != nullptr ? static_cast<const float*>(P.p) : p_ws;
  switch (phase) {
    case SplitPhase::kBegin:
      bwd_front(pl, P, b, p_ws, lse_ws, nullptr, nullptr, gcum, stream);
      return;
    case SplitPhase::kOverlap:
      gsa_cuda::launch_bwd_pairs(pl, P, p, b, stream);
      gsa_cuda::launch_bwd_dqkv(pl, P, b, gsa_cuda::DqkvPart::kDq, stream);
      return;
    case SplitPhase::kFinish:
      gsa_cuda::launch_shift_states(pl, gcum, static_cast<const float*>(P.dhkT),
                                    static_cast<const float*>(P.dhvT), b.dhk, b.dhv, stream);
      gsa_cuda::launch_bwd_ds_state(pl, P, b, stream);
      gsa_cuda::launch_bwd_dqkv(pl, P, b, gsa_cuda::DqkvPart::kDkDv, stream);
      return;
  }
}

}  // namespace ravensp::kernels
