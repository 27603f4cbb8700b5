// Gated slot attention (GSA) kernel contract: plain params structs of raw
// pointers and sizes, shared by the CPU reference and the CUDA kernels.
//
// Layout of every per-token tensor is contiguous [B, T, H, D] (D = K, V or M).
// With packed variable-length input (cu_seqlens != nullptr) B must be 1 and
// sequence n spans tokens [cu_seqlens[n], cu_seqlens[n+1]); the state restarts
// from its initial value at each boundary. States are [N, H, K, M] (key memory
// Hk) and [N, H, M, V] (value memory Hv), N = number of sequences, stored in the
// accumulation dtype (fp64 for fp64 inputs, fp32 otherwise), as are the softmax
// probabilities p [B, T, H, M] saved for the backward.
//
// Math (DESIGN.md §3), per head and token t, g <= 0 in log space:
//   Hk_t = Hk_{t-1} diag(exp g_t) + k_t s_t^T        u_t = scale * Hk_t^T q_t
//   p_t  = softmax(u_t)  (over the M slots)
//   Hv_t = diag(exp g_t) Hv_{t-1} + s_t v_t^T        o_t = Hv_t^T p_t
#pragma once

#include <cstdint>

namespace ravensp::kernels {

enum class DType { kFloat32, kFloat64, kBFloat16, kFloat16 };

const char* dtype_name(DType dt);

// Sizes shared by every GSA entry point.
struct GsaShape {
  int64_t batch = 0;     // B (1 when cu_seqlens is set)
  int64_t seqlen = 0;    // T per batch row (total tokens when packed)
  int64_t heads = 0;     // H
  int64_t head_k = 0;    // K
  int64_t head_v = 0;    // V
  int64_t slots = 0;     // M
  int64_t num_seqs = 0;  // N: B, or cu_seqlens length - 1
  const int64_t* cu_seqlens = nullptr;  // [N + 1] on the tensors' device, or nullptr
  const int64_t* cu_seqlens_host = nullptr;  // same offsets on the host (CUDA launch planning)
};

struct GsaFwdParams {
  GsaShape shape;
  DType dtype = DType::kFloat32;        // q, k, v, s, g, o
  DType accum_dtype = DType::kFloat32;  // states and p
  double scale = 1.0;
  int64_t chunk_size = 64;
  const void* q = nullptr;    // [B, T, H, K]
  const void* k = nullptr;    // [B, T, H, K]
  const void* v = nullptr;    // [B, T, H, V]
  const void* s = nullptr;    // [B, T, H, M]
  const void* g = nullptr;    // [B, T, H, M]
  const void* hk0 = nullptr;  // [N, H, K, M] or nullptr (zero)
  const void* hv0 = nullptr;  // [N, H, M, V] or nullptr (zero)
  void* o = nullptr;          // [B, T, H, V]
  void* p = nullptr;          // [B, T, H, M] softmax probabilities (may be nullptr: not saved)
  void* lse = nullptr;        // [B, T, H] log-sum-exp of each row's scores, accum dtype (may
                              // be nullptr); with p it gives the scores u = log p + lse
  void* hkT = nullptr;        // [N, H, K, M] final key state (may be nullptr)
  void* hvT = nullptr;        // [N, H, M, V] final value state (may be nullptr)
  void* states = nullptr;     // CUDA: the chunk states kept for the backward
                              // (gsa_chunk_saved_states_bytes), or nullptr
};

struct GsaBwdParams {
  GsaShape shape;
  DType dtype = DType::kFloat32;
  DType accum_dtype = DType::kFloat32;
  double scale = 1.0;
  int64_t chunk_size = 64;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* s = nullptr;
  const void* g = nullptr;
  const void* p = nullptr;     // saved by the forward, accum dtype
  const void* lse = nullptr;   // saved with p, or nullptr: the scores are recomputed
  const void* states = nullptr;  // CUDA: the forward's GsaFwdParams::states, or nullptr:
                                 // the chunk states are recomputed
  const void* hk0 = nullptr;   // or nullptr
  const void* hv0 = nullptr;   // or nullptr
  const void* d_o = nullptr;   // [B, T, H, V]
  const void* dhkT = nullptr;  // [N, H, K, M] or nullptr (zero)
  const void* dhvT = nullptr;  // [N, H, M, V] or nullptr (zero)
  void* dq = nullptr;          // dtype, same shapes as the inputs
  void* dk = nullptr;
  void* dv = nullptr;
  void* ds = nullptr;
  void* dg = nullptr;
  void* dhk0 = nullptr;        // accum dtype; may be nullptr when not needed
  void* dhv0 = nullptr;
};

// CPU reference (csrc/kernels/gsa/*_ref.cpp): dtype must equal accum_dtype and
// be kFloat32 or kFloat64; the ops layer converts half types before calling.
// The chunked and the token-by-token forms compute the same function; chunk_size
// only changes the order of the sums.
void gsa_chunk_fwd_cpu(const GsaFwdParams& params);
void gsa_chunk_bwd_cpu(const GsaBwdParams& params);
void gsa_recurrent_fwd_cpu(const GsaFwdParams& params);
void gsa_recurrent_bwd_cpu(const GsaBwdParams& params);

}  // namespace ravensp::kernels
