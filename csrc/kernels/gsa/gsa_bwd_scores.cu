// GSA backward, per chunk (CUDA): computes dp = exp(G) * (dO Hv^T) + gated
// intra term, du = p * (dp - <p, dp>), stores du and p*dp + u*du for the decay
// gradient, and writes the chunk's local state gradients scale * q^T (exp(G) du)
// and (p exp(G))^T dO for the reverse scan. It also leaves q k^T and dO v^T
// (fp32) for bwd_pairs, which needs both. The pass-1 scores u come from the
// forward's row log-sum-exp, u = log p + lse; without it they are recomputed
// (q Hk and a gated intra term per slot slice: a fifth of the kernel's time at
// M = 64, a quarter at M = 256).
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_intra.cuh"
#include "kernels/gsa/gsa_launch.cuh"
#include "kernels/gsa/gsa_mma_sync.cuh"
#include "kernels/gsa/gsa_pipeline.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels::gsa_cuda {
namespace {

// Shared memory of bwd_scores: fp32 DP, A, Us, the loop region, R; then Op and
// the tile pair Xs, Ys. DP (parked in du when M is sliced) and Us hold the
// slice's g and s as they arrive while DP is formed (Us is only computed after);
// the loop region is the pipelines' second buffer set (two token tiles and a
// state tile), then the slice's decay and s (fp32). Us stages each local state
// gradient tile on its way out, and a k tile of the q k^T pipeline (with Op).
// Two blocks per SM at any M (111 KB at bf16): the
// fp32 score buffers are one slot slice wide, the first set's state tile sits
// in Op (free until du exists), and Xs, Ys double as the scratch of
// gated_scores.
template <typename T>
struct ScoresSmem {
  int MS, ldd, lda, lds, lde, ldx;
  size_t off_a, off_us, off_loop, off_r, off_op, total;
  __host__ __device__ static constexpr size_t up(size_t x) { return (x + 127) / 128 * 128; }
  __host__ __device__ explicit ScoresSmem(int M)
      : MS(slice_of(M)), ldd(ld_of<float>(slice_of(M))), lda(ld_of<float>(kChunk)),
        lds(ld_of<float>(slice_of(M))), lde(ld_ew(slice_of(M))), ldx(ld_of<T>(kTile)) {
    // DP also holds the g and s tiles of a slice in the sliced local-gradient phase.
    off_a = up(max_of(static_cast<size_t>(kChunk) * ldd * sizeof(float),
                      2 * static_cast<size_t>(kChunk) * MS * sizeof(T)));
    off_us = up(off_a + static_cast<size_t>(kChunk) * lda * sizeof(float));
    // Us also holds a k tile in the q k^T pipeline (more than its scores at fp32, M = 32).
    off_loop = up(off_us + max_of(max_of(static_cast<size_t>(kChunk) * lds * sizeof(float),
                                         2 * static_cast<size_t>(kChunk) * MS * sizeof(T)),
                                  max_of(static_cast<size_t>(MS) * ld_of<float>(kTile) *
                                             sizeof(float),
                                         static_cast<size_t>(kChunk) * ldx * sizeof(T))));
    off_r = up(off_loop + max_of(2 * static_cast<size_t>(kChunk) * lde * sizeof(float),
                                 3 * static_cast<size_t>(kChunk) * ldx * sizeof(T)));
    off_op = up(off_r + 2 * kChunk * sizeof(float));  // R and the rows' lse
    total = off_op + kChunk * ldx * sizeof(T) +
            max_of(2 * kChunk * ldx * sizeof(T), gated_scores_scratch_floats(MS) * sizeof(float));
  }
  __host__ __device__ size_t bytes() const { return total; }
};

template <typename T>
__global__ void __launch_bounds__(kThreads, 2) bwd_scores_kernel(
    ChunkMap cm, int H, int K, int V, int M, float scale, const T* __restrict__ q,
    const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ s,
    const T* __restrict__ g, const T* __restrict__ dout, const float* __restrict__ p,
    const float* __restrict__ lse, const T* __restrict__ hk, const T* __restrict__ hv, float* __restrict__ du,
    float* __restrict__ dgca, T* __restrict__ dhk, T* __restrict__ dhv,
    float* __restrict__ qk_out, float* __restrict__ dov_out) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr bool kTC = sizeof(T) == 2;  // TF32 tensor cores for the intra-chunk products
  const ScoresSmem<T> L_(M);
  const int MS = L_.MS;
  float* DP = reinterpret_cast<float*>(smem_raw);
  float* A = reinterpret_cast<float*>(smem_raw + L_.off_a);
  float* Us = reinterpret_cast<float*>(smem_raw + L_.off_us);
  float* Gs = reinterpret_cast<float*>(smem_raw + L_.off_loop);
  float* Ss = Gs + kChunk * L_.lde;
  float* R = reinterpret_cast<float*>(smem_raw + L_.off_r);
  float* Lse = R + kChunk;
  const bool recompute_u = lse == nullptr;
  T* Op = reinterpret_cast<T*>(smem_raw + L_.off_op);
  T* Xs = Op + kChunk * L_.ldx;
  T* Ys = Xs + kChunk * L_.ldx;
  T* Graw = reinterpret_cast<T*>(Us);  // while DP is formed
  T* Sraw = Graw + kChunk * MS;
  T* X1 = reinterpret_cast<T*>(Gs);  // the loop region during the pipelines
  T* Y1 = X1 + kChunk * L_.ldx;
  T* Z1 = Y1 + kChunk * L_.ldx;
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y;
  const int64_t unit = cp.j * H + h, KM = static_cast<int64_t>(K) * M,
                MV = static_cast<int64_t>(M) * V;
  const int64_t tokK = (cp.tok0 * H + h) * K, rowK = static_cast<int64_t>(H) * K;
  const int64_t tokV = (cp.tok0 * H + h) * V, rowV = static_cast<int64_t>(H) * V;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;

  // The state tiles of the score products sit in Zs = Op (and Z1), which is free
  // until du is known; the dO and q tiles are loaded once for the two products
  // that share them.
  T* Zs = Op;
  const int nv = V / kTile, nk = K / kTile;
  // Per slot slice: DP = dO Hv^T (pipelined over V; the first slice also computes
  // A = dO v^T from the same dO tiles), its gated intra term, and the slice's
  // share of R = <p, dp>. With more than one slice, each finished DP slice waits
  // in du's rows (du overwrites it below), so the fp32 score buffers are one
  // slice wide whatever M is.
  const bool sliced = M > MS;
  const int64_t pair = unit * kChunk * kChunk;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int m0 = 0; m0 < M; m0 += MS) {
    const bool first = m0 == 0;
    async_tile(Graw, MS, g + tokM + m0, rowM, kChunk, cp.L, MS);
    async_tile(Sraw, MS, s + tokM + m0, rowM, kChunk, cp.L, MS);
    pipelined_steps(
        nv,
        [&](int vt, int b) {
          async_tile(b ? X1 : Xs, L_.ldx, dout + tokV + vt * kTile, rowV, kChunk, cp.L, kTile);
          if (first)
            async_tile(b ? Y1 : Ys, L_.ldx, v + tokV + vt * kTile, rowV, kChunk, cp.L, kTile);
          async_tile(b ? Z1 : Zs, L_.ldx,
                     hv + unit * MV + static_cast<int64_t>(m0) * V + vt * kTile,
                     static_cast<int64_t>(V), MS, MS, kTile);
        },
        [&](int vt, int b) {
          const T* X = b ? X1 : Xs;
          if (first)
            block_mma<false, true>(A, L_.lda, X, L_.ldx, b ? Y1 : Ys, L_.ldx, kChunk, kChunk,
                                   kTile, vt > 0);
          block_mma<false, true>(DP, L_.ldd, X, L_.ldx, b ? Z1 : Zs, L_.ldx, kChunk, MS, kTile,
                                 vt > 0);
        });
    if (first) store_square(dov_out + pair, A, L_.lda);  // for bwd_pairs, which needs it too
    // dp = exp(G) (dO Hv^T) + sum_{i<=t} (do_t . v_i) s_i exp(G_t - G_i)
    chunk_decay<T>(Gs, L_.lde, Graw, MS, cp.L, MS);
    convert_tile(Ss, L_.lde, Sraw, MS, kChunk, MS);
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
  // A1 = q k^T (unscaled: gated_scores applies the scale) and, when u is
  // recomputed, the first slot slice of q Hk, one pass over K.
  if (!recompute_u)
    for (int t = threadIdx.x; t < kChunk; t += blockDim.x)
      Lse[t] = t < cp.L ? lse[(cp.tok0 + t) * H + h] : 0.f;
  if (recompute_u) {
    for (int kt = 0; kt < nk; ++kt) {
      async_tile(Xs, L_.ldx, q + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
      async_tile(Ys, L_.ldx, k + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
      async_tile(Zs, L_.ldx, hk + unit * KM + static_cast<int64_t>(kt) * kTile * M,
                 static_cast<int64_t>(M), kTile, kTile, MS);
      async_wait();
      block_mma<false, true>(A, L_.lda, Xs, L_.ldx, Ys, L_.ldx, kChunk, kChunk, kTile, kt > 0);
      block_mma<false, false>(Us, L_.lds, Xs, L_.ldx, Zs, L_.ldx, kChunk, MS, kTile, kt > 0);
      __syncthreads();
    }
  } else {
    // Pipelined over K: the second buffer set is Op (free until du exists) and
    // Us (free: u comes from lse), so the loop region keeps the slice's decay.
    T* Xq = Op;
    T* Yk = reinterpret_cast<T*>(Us);
    pipelined_steps(
        nk,
        [&](int kt, int b) {
          async_tile(b ? Xq : Xs, L_.ldx, q + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
          async_tile(b ? Yk : Ys, L_.ldx, k + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
        },
        [&](int kt, int b) {
          block_mma<false, true>(A, L_.lda, b ? Xq : Xs, L_.ldx, b ? Yk : Ys, L_.ldx, kChunk,
                                 kChunk, kTile, kt > 0);
        });
  }
  store_square(qk_out + pair, A, L_.lda);
  // The local state gradients stream q and dO tiles through Xs / Ys, the next
  // tile's copy in flight during the current product.
  auto buf = [&](int i) { return (i & 1) ? Ys : Xs; };
  const int ldo = ld_of<float>(kTile);  // Us as the staging of a local dHv tile
  for (int m0 = 0; m0 < M; m0 += MS) {
    if (sliced) {
      // This slice's q Hk (slice 0's came with A1), pipelined over K, and its
      // decay and s (Gs, Ss hold the DP phase's last slice). DP, parked in du,
      // holds the g and s tiles as they arrive.
      T* Graw2 = reinterpret_cast<T*>(DP);
      T* Sraw2 = Graw2 + kChunk * MS;
      async_tile(Graw2, MS, g + tokM + m0, rowM, kChunk, cp.L, MS);
      async_tile(Sraw2, MS, s + tokM + m0, rowM, kChunk, cp.L, MS);
      if (m0 > 0 && recompute_u) {
        pipelined_steps(
            nk,
            [&](int kt, int b) {
              async_tile(b ? X1 : Xs, L_.ldx, q + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
              async_tile(b ? Z1 : Zs, L_.ldx,
                         hk + unit * KM + static_cast<int64_t>(kt) * kTile * M + m0,
                         static_cast<int64_t>(M), kTile, kTile, MS);
            },
            [&](int kt, int b) {
              block_mma<false, false>(Us, L_.lds, b ? X1 : Xs, L_.ldx, b ? Z1 : Zs, L_.ldx,
                                      kChunk, MS, kTile, kt > 0);
            });
      } else {
        async_wait();
      }
      chunk_decay<T>(Gs, L_.lde, Graw2, MS, cp.L, MS);
      convert_tile(Ss, L_.lde, Sraw2, MS, kChunk, MS);
      __syncthreads();
    }
    // (With one slice, Gs and Ss still hold it from the DP phase.)
    if (recompute_u)
      gated_scores<kTC>(Us, L_.lds, Us, L_.lds, A, L_.lda, Gs, Ss, L_.lde, cp.L, MS, scale,
                        reinterpret_cast<float*>(Xs));
    // du, p*dp + u*du; Op = scale * exp(G) * du (operand of the local dHk).
    // Pe = p e^G (operand of the local dHv) goes where nothing is read any more:
    // A once q k^T is stored (one slice), DP once its g and s are used (sliced).
    async_tile(buf(0), L_.ldx, q + tokK, rowK, kChunk, cp.L, kTile);
    T* Pe = reinterpret_cast<T*>(sliced ? DP : A);
    for (int idx = threadIdx.x; idx < kChunk * MS; idx += blockDim.x) {
      const int t = idx / MS, m = idx - t * MS;
      float d = 0.f, pt = 0.f;
      if (t < cp.L) {
        const int64_t at = tokM + t * rowM + m0 + m;
        pt = p[at];
        const float dp = sliced ? du[at] : DP[t * L_.ldd + m];
        d = pt * (dp - R[t]);
        du[at] = d;
        // u du is 0 where p underflowed to 0 (du = p (dp - R) is 0 there too).
        const float u = recompute_u ? Us[t * L_.lds + m] : (pt > 0.f ? logf(pt) + Lse[t] : 0.f);
        dgca[at] = fmaf(pt, dp, u * d);
      }
      const float eg = __expf(Gs[t * L_.lde + m]);
      Op[t * L_.ldx + m] = from_f<T>(scale * eg * d);
      Pe[t * L_.ldx + m] = from_f<T>(pt * eg);
    }
    for (int kt = 0; kt < nk; ++kt) {
      async_wait();
      if (kt + 1 < nk)
        async_tile(buf(kt + 1), L_.ldx, q + tokK + (kt + 1) * kTile, rowK, kChunk, cp.L,
                   kTile);
      T* out = dhk + unit * KM + static_cast<int64_t>(kt) * kTile * M + m0;
      if constexpr (kTC) {
        // Register tiles straight to global memory (mma.sync): no staging, no barrier.
        tokens_product_to_global(out, M, buf(kt), L_.ldx, Op, L_.ldx, kTile, MS);
      } else {
        // Through Us (fp32, free once du is formed).
        block_mma<true, false>(Us, L_.lds, buf(kt), L_.ldx, Op, L_.ldx, kTile, MS, kChunk,
                               false);
        __syncthreads();
        store_tile(out, M, Us, L_.lds, kTile, MS);
      }
    }
    __syncthreads();
    async_tile(buf(0), L_.ldx, dout + tokV, rowV, kChunk, cp.L, kTile);
    for (int vt = 0; vt < nv; ++vt) {
      async_wait();
      if (vt + 1 < nv)
        async_tile(buf(vt + 1), L_.ldx, dout + tokV + (vt + 1) * kTile, rowV, kChunk,
                   cp.L, kTile);
      T* out = dhv + unit * MV + static_cast<int64_t>(m0) * V + vt * kTile;
      if constexpr (kTC) {
        tokens_product_to_global(out, V, Pe, L_.ldx, buf(vt), L_.ldx, MS, kTile);
      } else {
        block_mma<true, false>(Us, ldo, Pe, L_.ldx, buf(vt), L_.ldx, MS, kTile, kChunk, false);
        __syncthreads();
        store_tile(out, V, Us, ldo, MS, kTile);
      }
    }
    __syncthreads();
  }
}

template <typename T>
void scores_typed(const Plan& pl, const GsaBwdParams& P, const float* p, const float* lse,
                  const BwdBufs& b, cudaStream_t stream) {
  const size_t smem = ScoresSmem<T>(static_cast<int>(pl.M)).bytes();
  set_smem(bwd_scores_kernel<T>, smem, "gsa bwd_scores_kernel");
  bwd_scores_kernel<T><<<dim3(pl.NC, pl.H), kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.K, pl.V, pl.M, static_cast<float>(P.scale),
      static_cast<const T*>(P.q), static_cast<const T*>(P.k), static_cast<const T*>(P.v),
      static_cast<const T*>(P.s), static_cast<const T*>(P.g), static_cast<const T*>(P.d_o), p,
      lse, static_cast<const T*>(pl.hk), static_cast<const T*>(pl.hv), b.du, b.dgca,
      static_cast<T*>(b.dhk), static_cast<T*>(b.dhv), b.bm, b.a2);
  RAVENSP_LAUNCH_CHECK("gsa bwd_scores_kernel");
}

}  // namespace

void launch_bwd_scores(const Plan& pl, const GsaBwdParams& P, const float* p, const float* lse,
                       const BwdBufs& b, cudaStream_t stream) {
  switch (pl.dtype) {
    case DType::kBFloat16: return scores_typed<__nv_bfloat16>(pl, P, p, lse, b, stream);
    case DType::kFloat16: return scores_typed<__half>(pl, P, p, lse, b, stream);
    default: return scores_typed<float>(pl, P, p, lse, b, stream);
  }
}

}  // namespace ravensp::kernels::gsa_cuda
