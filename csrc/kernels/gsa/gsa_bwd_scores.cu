// GSA backward, per chunk (CUDA): recomputes the pass-1 scores u, computes
// dp = exp(G) * (dO Hv^T) + gated intra term, du = p * (dp - <p, dp>), stores du
// and p*dp + u*du for the decay gradient, and writes the chunk's local state
// gradients scale * q^T (exp(G) du) and (p exp(G))^T dO for the reverse scan.
// It also leaves q k^T and dO v^T (fp32) for bwd_pairs, which needs both.
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_intra.cuh"
#include "kernels/gsa/gsa_launch.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels::gsa_cuda {
namespace {

template <typename T>
struct ScoresSmem {
  int MS, ldd, lda, lds, lde, ldx;
  __host__ __device__ explicit ScoresSmem(int M)
      : MS(slice_of(M)), ldd(ld_of<float>(slice_of(M))), lda(ld_of<float>(kChunk)),
        lds(ld_of<float>(slice_of(M))), lde(ld_ew(slice_of(M))), ldx(ld_of<T>(kTile)) {}
  __host__ __device__ size_t floats() const {
    // p is read from global memory where it is used rather than staged.
    return static_cast<size_t>(kChunk) * (ldd + lda + lds + 2 * lde + 1) + 64;
  }
  // Two blocks per SM at any M (111 KB at bf16): the fp32 score buffers are one
  // slot slice wide, the state tile of the score products sits in Op (free until
  // du exists), and the tiles Xs, Ys double as the scratch of gated_scores.
  __host__ __device__ size_t bytes() const {
    return floats() * sizeof(float) + kChunk * ldx * sizeof(T) +
           max_of(2 * kChunk * ldx * sizeof(T),
                  gated_scores_scratch_floats(MS) * sizeof(float));
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads, 2) bwd_scores_kernel(
    ChunkMap cm, int H, int K, int V, int M, float scale, const T* __restrict__ q,
    const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ s,
    const T* __restrict__ g, const T* __restrict__ dout, const float* __restrict__ p,
    const float* __restrict__ hk, const float* __restrict__ hv, float* __restrict__ du,
    float* __restrict__ dgca, float* __restrict__ dhk, float* __restrict__ dhv,
    float* __restrict__ qk_out, float* __restrict__ dov_out) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr bool kTC = sizeof(T) == 2;  // TF32 tensor cores for the intra-chunk products
  const ScoresSmem<T> L_(M);
  float* DP = reinterpret_cast<float*>(smem_raw);
  float* A = DP + kChunk * L_.ldd;
  float* Us = A + kChunk * L_.lda;
  float* Gs = Us + kChunk * L_.lds;
  float* Ss = Gs + kChunk * L_.lde;
  float* R = Ss + kChunk * L_.lde;
  T* Op = reinterpret_cast<T*>(reinterpret_cast<float*>(smem_raw) + L_.floats());
  T* Xs = Op + kChunk * L_.ldx;
  T* Ys = Xs + kChunk * L_.ldx;
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y, MS = L_.MS;
  const int64_t unit = cp.j * H + h, KM = static_cast<int64_t>(K) * M,
                MV = static_cast<int64_t>(M) * V;
  const int64_t tokK = (cp.tok0 * H + h) * K, rowK = static_cast<int64_t>(H) * K;
  const int64_t tokV = (cp.tok0 * H + h) * V, rowV = static_cast<int64_t>(H) * V;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;

  // Every tile this kernel multiplies comes in by cp.async (async_tile) into
  // Xs / Ys, which hold no registers, beside a synchronous load of the fp32
  // state tile into Zs (converted to T; Zs is Op, which is free until du is
  // known); the dO and q tiles are loaded once for the two products that share
  // them.
  T* Zs = Op;
  const int nv = V / kTile, nk = K / kTile;
  // Per slot slice: DP = dO Hv^T (one pass over V; the first slice also computes
  // A = dO v^T from the same dO tiles), its gated intra term, and the slice's
  // share of R = <p, dp>. With more than one slice, each finished DP slice waits
  // in du's rows (du overwrites it below), so the fp32 score buffers are one
  // slice wide whatever M is.
  const bool sliced = M > MS;
  const int64_t pair = unit * kChunk * kChunk;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int m0 = 0; m0 < M; m0 += MS) {
    for (int vt = 0; vt < nv; ++vt) {
      async_tile(Xs, L_.ldx, dout + tokV + vt * kTile, rowV, kChunk, cp.L, kTile);
      if (m0 == 0) async_tile(Ys, L_.ldx, v + tokV + vt * kTile, rowV, kChunk, cp.L, kTile);
      load_tile(Zs, L_.ldx, hv + unit * MV + static_cast<int64_t>(m0) * V + vt * kTile,
                static_cast<int64_t>(V), MS, MS, kTile);
      async_wait();
      if (m0 == 0)
        block_mma<false, true>(A, L_.lda, Xs, L_.ldx, Ys, L_.ldx, kChunk, kChunk, kTile, vt > 0);
      block_mma<false, true>(DP, L_.ldd, Xs, L_.ldx, Zs, L_.ldx, kChunk, MS, kTile, vt > 0);
      __syncthreads();
    }
    if (m0 == 0) store_square(dov_out + pair, A, L_.lda);  // for bwd_pairs, which needs it too
    // dp = exp(G) (dO Hv^T) + sum_{i<=t} (do_t . v_i) s_i exp(G_t - G_i)
    chunk_decay<T>(Gs, L_.lde, g + tokM + m0, rowM, cp.L, MS);
    load_tile(Ss, L_.lde, s + tokM + m0, rowM, kChunk, cp.L, MS);
    __syncthreads();
    gated_scores<kTC>(DP, L_.ldd, DP, L_.ldd, A, L_.lda, Gs, Ss, L_.lde, cp.L, MS, 1.f,
                      reinterpret_cast<float*>(Xs));
    for (int t = warp; t < kChunk; t += kThreads / 32) {  // row t's R stays with one lane
      float acc = 0.f;
      if (t < cp.L)
        for (int m = lane; m < MS; m += 32) acc += p[tokM + t * rowM + m0 + m] * DP[t * L_.ldd + m];
      for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
      if (lane == 0) R[t] = m0 == 0 ? acc : R[t] + acc;
    }
    if (sliced)
      for (int idx = threadIdx.x; idx < cp.L * MS; idx += blockDim.x) {
        const int t = idx / MS, m = idx - t * MS;
        du[tokM + t * rowM + m0 + m] = DP[t * L_.ldd + m];
      }
    __syncthreads();
  }
  // A1 = q k^T (unscaled: gated_scores applies the scale) and the first slot
  // slice of q Hk, one pass over K.
  for (int kt = 0; kt < nk; ++kt) {
    async_tile(Xs, L_.ldx, q + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
    async_tile(Ys, L_.ldx, k + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
    load_tile(Zs, L_.ldx, hk + unit * KM + static_cast<int64_t>(kt) * kTile * M,
              static_cast<int64_t>(M), kTile, kTile, MS);
    async_wait();
    block_mma<false, true>(A, L_.lda, Xs, L_.ldx, Ys, L_.ldx, kChunk, kChunk, kTile, kt > 0);
    block_mma<false, false>(Us, L_.lds, Xs, L_.ldx, Zs, L_.ldx, kChunk, MS, kTile, kt > 0);
    __syncthreads();
  }
  store_square(qk_out + pair, A, L_.lda);
  // The local state gradients stream q and dO tiles through Xs / Ys, the next
  // tile's copy in flight during the current product.
  auto buf = [&](int i) { return (i & 1) ? Ys : Xs; };
  for (int m0 = 0; m0 < M; m0 += MS) {
    for (int kt = 0; m0 > 0 && kt < nk; ++kt) {
      async_tile(Xs, L_.ldx, q + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
      load_tile(Zs, L_.ldx, hk + unit * KM + static_cast<int64_t>(kt) * kTile * M + m0,
                static_cast<int64_t>(M), kTile, kTile, MS);
      async_wait();
      block_mma<false, false>(Us, L_.lds, Xs, L_.ldx, Zs, L_.ldx, kChunk, MS, kTile, kt > 0);
      __syncthreads();
    }
    chunk_decay<T>(Gs, L_.lde, g + tokM + m0, rowM, cp.L, MS);
    load_tile(Ss, L_.lde, s + tokM + m0, rowM, kChunk, cp.L, MS);
    __syncthreads();
    gated_scores<kTC>(Us, L_.lds, Us, L_.lds, A, L_.lda, Gs, Ss, L_.lde, cp.L, MS, scale,
                      reinterpret_cast<float*>(Xs));
    // du, p*dp + u*du; Op = scale * exp(G) * du (operand of the local dHk).
    async_tile(buf(0), L_.ldx, q + tokK, rowK, kChunk, cp.L, kTile);
    for (int idx = threadIdx.x; idx < kChunk * MS; idx += blockDim.x) {
      const int t = idx / MS, m = idx - t * MS;
      float d = 0.f;
      if (t < cp.L) {
        const int64_t at = tokM + t * rowM + m0 + m;
        const float pt = p[at], dp = sliced ? du[at] : DP[t * L_.ldd + m];
        d = pt * (dp - R[t]);
        du[at] = d;
        dgca[at] = fmaf(pt, dp, Us[t * L_.lds + m] * d);
      }
      Op[t * L_.ldx + m] = from_f<T>(scale * __expf(Gs[t * L_.lde + m]) * d);
    }
    for (int kt = 0; kt < nk; ++kt) {
      async_wait();
      if (kt + 1 < nk)
        async_tile(buf(kt + 1), L_.ldx, q + tokK + (kt + 1) * kTile, rowK, kChunk, cp.L,
                   kTile);
      block_mma<true, false>(dhk + unit * KM + static_cast<int64_t>(kt) * kTile * M + m0, M,
                             buf(kt), L_.ldx, Op, L_.ldx, kTile, MS, kChunk, false);
    }
    __syncthreads();
    async_tile(buf(0), L_.ldx, dout + tokV, rowV, kChunk, cp.L, kTile);
    for (int idx = threadIdx.x; idx < kChunk * MS; idx += blockDim.x) {
      const int t = idx / MS, m = idx - t * MS;
      const float pt = t < cp.L ? p[tokM + t * rowM + m0 + m] : 0.f;
      Op[t * L_.ldx + m] = from_f<T>(pt * __expf(Gs[t * L_.lde + m]));
    }
    for (int vt = 0; vt < nv; ++vt) {
      async_wait();
      if (vt + 1 < nv)
        async_tile(buf(vt + 1), L_.ldx, dout + tokV + (vt + 1) * kTile, rowV, kChunk,
                   cp.L, kTile);
      block_mma<true, false>(dhv + unit * MV + static_cast<int64_t>(m0) * V + vt * kTile, V, Op,
                             L_.ldx, buf(vt), L_.ldx, MS, kTile, kChunk, false);
    }
    __syncthreads();
  }
}

template <typename T>
void scores_typed(const Plan& pl, const GsaBwdParams& P, const float* p, const BwdBufs& b,
                  cudaStream_t stream) {
  const size_t smem = ScoresSmem<T>(static_cast<int>(pl.M)).bytes();
  set_smem(bwd_scores_kernel<T>, smem, "gsa bwd_scores_kernel");
  bwd_scores_kernel<T><<<dim3(pl.NC, pl.H), kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.K, pl.V, pl.M, static_cast<float>(P.scale),
      static_cast<const T*>(P.q), static_cast<const T*>(P.k), static_cast<const T*>(P.v),
      static_cast<const T*>(P.s), static_cast<const T*>(P.g), static_cast<const T*>(P.d_o), p,
      pl.hk, pl.hv, b.du, b.dgca, b.dhk, b.dhv, b.bm, b.a2);
  RAVENSP_LAUNCH_CHECK("gsa bwd_scores_kernel");
}

}  // namespace

void launch_bwd_scores(const Plan& pl, const GsaBwdParams& P, const float* p, const BwdBufs& b,
                       cudaStream_t stream) {
  switch (pl.dtype) {
    case DType::kBFloat16: return scores_typed<__nv_bfloat16>(pl, P, p, b, stream);
    case DType::kFloat16: return scores_typed<__half>(pl, P, p, b, stream);
    default: return scores_typed<float>(pl, P, p, b, stream);
  }
}

}  // namespace ravensp::kernels::gsa_cuda
