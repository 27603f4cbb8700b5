// CUDA entry points of the GSA kernels (torch-free): params + workspace + stream.
// The caller allocates the workspace (bytes from *_workspace_bytes) on the
// tensors' device; the kernels keep per-chunk states and state gradients there,
// in the input dtype (the scans carry the running state in fp32).
// Supported shapes: gsa_cuda_table.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/gsa/gsa_cuda_table.h"
#include "kernels/gsa/params.h"

namespace ravensp::kernels {

// params.states, when not null, is a buffer of gsa_chunk_saved_states_bytes on
// the device: the forward leaves its chunk-start states, chunk decays and final
// states there, and the backward given the same buffer (GsaBwdParams::states)
// reads them instead of recomputing them (local states and a scan, or the
// walk: an eighth of the backward at B1 H4 M=64 T=32K). Its layout is private to these kernels; its size follows from the
// shape and dtype alone.
size_t gsa_chunk_saved_states_bytes(const GsaShape& shape, DType dtype);
size_t gsa_chunk_fwd_workspace_bytes(const GsaFwdParams& params);
void gsa_chunk_fwd_cuda(const GsaFwdParams& params, void* workspace, cudaStream_t stream);

// p may be nullptr: the backward then recomputes it from the forward states.
size_t gsa_chunk_bwd_workspace_bytes(const GsaBwdParams& params);
void gsa_chunk_bwd_cuda(const GsaBwdParams& params, void* workspace, cudaStream_t stream);

// The chunked passes split at the initial state, for sequence parallelism: a
// rank must send its shard's end state before it can know the state entering
// the shard. Every chunk state is linear in the initial state (or, backward,
// in the end-state gradient), so the phases run the scan from zero, expose
// what the ranks exchange, and fold the exchanged state in afterwards with
// nothing computed twice (gsa_split.cu). Each phase of one pass takes the same
// params and workspace (from *_split_workspace_bytes), in the order below.
//   forward  kBegin:   chunk states from a zero initial state; hkT/hvT get each
//                      sequence's end state (what the ranks exchange)
//            kOverlap: the scores of the zero-start states into p, before the
//                      softmax: needs no incoming state, so it runs while the
//                      end states are in flight
//            kFinish:  hk0/hv0 now hold the incoming states (nullptr: zero): their
//                      term joins the scores, the softmax goes to p, pass 2 to o
//   backward kBegin:   the forward's states from hk0/hv0, du, the local state
//                      gradients and the reverse scan with a zero end-state
//                      gradient; dhk0/dhv0 get the gradient at the initial state
//                      (what the ranks exchange)
//            kOverlap: what needs no end-state gradient: the intra-chunk part
//                      of ds, the pair matrices and dq
//            kFinish:  dhkT/dhvT hold the end-state gradients (nullptr: zero):
//                      they join the chunk gradients, then ds, dg, dk, dv
// p must be non-null in the forward's params.
enum class SplitPhase { kBegin, kOverlap, kFinish };
size_t gsa_chunk_fwd_split_workspace_bytes(const GsaFwdParams& params);
void gsa_chunk_fwd_split_cuda(const GsaFwdParams& params, SplitPhase phase, void* workspace,
                              cudaStream_t stream);
size_t gsa_chunk_bwd_split_workspace_bytes(const GsaBwdParams& params);
void gsa_chunk_bwd_split_cuda(const GsaBwdParams& params, SplitPhase phase, void* workspace,
                              cudaStream_t stream);

// Token-by-token forward for decoding (short T, state in and out): one kernel
// per pass that keeps its state columns in registers.
size_t gsa_recurrent_fwd_workspace_bytes(const GsaFwdParams& params);
void gsa_recurrent_fwd_cuda(const GsaFwdParams& params, void* workspace, cudaStream_t stream);

}  // namespace ravensp::kernels
