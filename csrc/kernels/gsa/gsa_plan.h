// Launch plan of the CUDA GSA path: sizes, the carving of the caller's workspace
// into per-chunk state buffers, and the launchers each .cu file provides.
// Internal to csrc/kernels/gsa (the public entry points are in gsa_cuda.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/gsa/params.h"

namespace ravensp::kernels::gsa_cuda {

// Sequential carving of one workspace; with base == nullptr it only counts bytes.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(int64_t count) {
    return static_cast<T*>(take_raw(count, sizeof(T)));
  }
  // count elements of `bytes_each` bytes (a dtype known only at run time).
  void* take_raw(int64_t count, size_t bytes_each) {
    const size_t at = offset_;
    offset_ += (static_cast<size_t>(count) * bytes_each + 255) / 256 * 256;
    return base_ ? static_cast<void*>(base_ + at) : nullptr;
  }
  size_t bytes() const { return offset_; }

 private:
  char* base_;
  size_t offset_ = 0;
};

struct Plan {
  int64_t N = 0, H = 0, K = 0, V = 0, M = 0, NC = 0, tokens = 0, seqlen = 0;
  DType dtype = DType::kBFloat16;
  const int64_t* cu = nullptr;  // device token offsets or nullptr
  int64_t* seq_chunk_off = nullptr;  // [N + 1]
  int32_t* chunk_seq = nullptr;      // [NC]
  // Per-chunk states in the input dtype: every consumer multiplies them on the
  // tensor cores in that dtype anyway, and they were most of the chunk kernels'
  // memory traffic in fp32. The scans and walks that make them keep their
  // running state in fp32 registers and round once per chunk.
  void* hk = nullptr;   // [NC, H, K, M] chunk-start key states (local states before the scan)
  void* hv = nullptr;   // [NC, H, M, V]
  float* gl = nullptr;  // [NC, H, M] total log decay of each chunk
  // [NC, H, 64, 64] pass 2's pair matrix A2[t][i] = sum_m p_tm s_im e^{G_tm - G_im}
  // in the input dtype, when the forward keeps its states (carve_saved): pass 2
  // writes it, and the backward reads it instead of forming it again in bwd_pairs.
  void* a2 = nullptr;
};

// Bytes of one element of the per-chunk states (the input dtype's).
inline size_t state_bytes(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

// Backward-only buffers (fp32 unless said otherwise).
struct BwdBufs {
  float* fin_k = nullptr;  // [N, H, K, M] final states (the end state of each last chunk)
  float* fin_v = nullptr;  // [N, H, M, V]
  void* dhk = nullptr;     // [NC, H, K, M] gradient at each chunk's end state (input dtype)
  void* dhv = nullptr;     // [NC, H, M, V]
  float* du = nullptr;     // [tokens, H, M] gradient of the pre-softmax scores; after
                           // pairs, each row holds scale du e^G (T) in its lower half and,
                           // after ds_state, W (T, 16-bit inputs) in its upper half
  float* dgca = nullptr;   // [tokens, H, M] p * dp + u * du, less s * the intra-chunk ds after pairs
                           // (the decay gradient's summand without its state part)
  // [NC, H, 64, 64] fp32 areas of the pair matrices. bwd_scores leaves q k^T in bm
  // and dO v^T in a2 (it has them at hand); bwd_pairs reads them and writes over
  // the start of each area, in the input dtype, bm = sum_m s_im exp(G_tm - G_im)
  // du_tm and a2 = the same with p, the operands of bwd_dqkv.
  float* bm = nullptr;
  float* a2 = nullptr;
  // [tokens, H, M] of T: scale e^G du and p e^G as bwd_scores forms them, the
  // reverse walk's operands (nullptr: bwd_scores forms the local state gradients
  // itself and the reverse combine scans them).
  void* ow = nullptr;
  void* pw = nullptr;
};

// Sizes and the chunk count of a call (cu_seqlens_host gives packed lengths).
Plan make_plan(const GsaShape& shape, DType dtype);
// Carves the chunk map.
void carve_map(Plan& plan, Carver& carver);
// Carves the per-chunk state buffers hk, hv and gl.
void carve_states(Plan& plan, Carver& carver);
// The forward's states kept for the backward (GsaFwdParams::states): the buffers
// of carve_states, then the final states fin_k [N, H, K, M] and fin_v [N, H, M, V]
// in fp32 (the end state of each sequence's last chunk, which the backward's
// decay gradient reads), then plan.a2.
void carve_saved(Plan& plan, Carver& carver, float** fin_k, float** fin_v);
// The map from the workspace, and the state buffers from `kept` (the forward's
// saved states; *fin_k / *fin_v then point at its final states) or, when kept is
// null, from the workspace (*fin_k / *fin_v left as they are).
void carve_plan(Plan& plan, Carver& workspace, void* kept, float** fin_k, float** fin_v);

// gsa_states.cu
void launch_chunk_map(const Plan& plan, cudaStream_t stream);
// Per chunk: local states from zero and the chunk's total decay.
void launch_local_states(const Plan& plan, const void* k, const void* v, const void* s,
                         const void* g, cudaStream_t stream);
// Forward scan over chunks: hk/hv become chunk-start states; final states are
// written to hkT/hvT when not null. Reverse: the buffers hold local state
// gradients and become the gradients at each chunk's end; d0 gets the start.
// gcum, when not null ([NC, H, M]), gets the log decay between the scan's start
// and each chunk: the sequence start to the chunk's start (forward) or the
// chunk's end to the sequence end (reverse); the split phases shift the chunk
// states by an initial state (or gradient) decayed by it.
// bk / bv are per-chunk state buffers in the input dtype (Plan::hk); the running
// state is fp32, as are init and out.
void launch_combine(const Plan& plan, bool reverse, void* bk, void* bv, const float* init_k,
                    const float* init_v, float* out_k, float* out_v, cudaStream_t stream,
                    float* gcum = nullptr);

// gsa_state_walk.cu: the chunk-start states into plan.hk / plan.hv from
// (init_k, init_v; nullptr = zero), the chunk decays into plan.gl, the final
// states into out_k / out_v when not null: by one walk over the chunks per state
// tile when that fills the GPU, else local_states then combine. scratch is a
// [tokens, H, M] fp32 buffer the call may overwrite.
// Raises unless RAVENSP_GSA_STATES is unset, 'walk' or 'scan' (the entry points
// call it before any launch).
void check_state_route();
// The backward's end-state gradients by a reverse walk over the chunks (16-bit
// inputs, where the forward would walk): dhk/dhv[c] = the gradient at chunk c's
// end state, from end_k/end_v (the final states' gradients; nullptr = zero),
// with chunk c's own part q^T ow and pw^T dO, ow = scale e^G du and pw = p e^G
// ([tokens, H, M] of T, as bwd_scores leaves them); d0_k/d0_v (nullptr = not
// wanted) get the initial states' gradients. Replaces bwd_scores' local state
// gradients and the reverse combine.
bool use_reverse_walk(const Plan& plan);
void launch_reverse_walk(const Plan& plan, const void* q, const void* dout, const void* ow,
                         const void* pw, const float* end_k, const float* end_v, float* d0_k,
                         float* d0_v, void* dhk, void* dhv, cudaStream_t stream);
void launch_chunk_states(const Plan& plan, const void* k, const void* v, const void* s,
                         const void* g, const float* init_k, const float* init_v, float* out_k,
                         float* out_v, float* scratch, cudaStream_t stream);

// gsa_chunk_fwd.cu
// raw: write the scaled pre-softmax scores to p_out instead of the softmax.
void launch_pass1(const Plan& plan, const GsaFwdParams& P, float* p_out, cudaStream_t stream,
                  bool raw = false);
void launch_pass2(const Plan& plan, const GsaFwdParams& P, const float* p, cudaStream_t stream);

// gsa_split.cu (the split phases): the incoming key state's term added to the
// zero-start scores in p (raw pass 1), then the softmax, in place; P.hk0 is the
// incoming state per sequence (nullptr: zero).
void launch_inter_softmax(const Plan& plan, const GsaFwdParams& P, const float* gcum, float* p,
                          cudaStream_t stream);
// bk[j] += exp(gcum[j]) (.) vk[seq(j)], bv likewise (null vectors are skipped);
// bk / bv in the input dtype, vk / vv fp32.
void launch_shift_states(const Plan& plan, const float* gcum, const float* vk, const float* vv,
                         void* bk, void* bv, cudaStream_t stream);

// gsa_bwd_scores.cu: per chunk du, p*dp + u*du, and the local state gradients
// (written into b.dhk / b.dhv before the reverse scan). The scores u are
// log p + lse: both are required (the backward's front runs pass 1 for them
// when the caller has neither).
void launch_bwd_scores(const Plan& plan, const GsaBwdParams& P, const float* p, const float* lse,
                       const BwdBufs& b, cudaStream_t stream);
// gsa_bwd_grads.cu. pairs: the intra-chunk ds (into P.ds), dgca -= s * that,
// and the pair matrices; needs no state gradient. ds_state (after the reverse
// scan): ds completed, dg. dqkv: the dq tiles need no state gradient, the dk
// and dv tiles do.
void launch_bwd_pairs(const Plan& plan, const GsaBwdParams& P, const float* p, const BwdBufs& b,
                      cudaStream_t stream);
void launch_bwd_ds_state(const Plan& plan, const GsaBwdParams& P, const BwdBufs& b,
                         cudaStream_t stream);
enum class DqkvPart { kAll, kDq, kDkDv };
void launch_bwd_dqkv(const Plan& plan, const GsaBwdParams& P, const BwdBufs& b, DqkvPart part,
                     cudaStream_t stream);

}  // namespace ravensp::kernels::gsa_cuda
