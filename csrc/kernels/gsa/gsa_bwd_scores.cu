// GSA backward, per chunk (CUDA): computes dp = exp(G) * (dO Hv^T) + gated
// intra term, du = p * (dp - <p, dp>), stores du and p*dp + u*du for the decay
// gradient, and writes the chunk's local state gradients scale * q^T (exp(G) du)
// and (p exp(G))^T dO for the reverse scan. It also leaves q k^T and dO v^T
// (fp32) for bwd_pairs, which needs both. The pass-1 scores u come from the
// forward's row log-sum-exp, u = log p + lse (recomputing them, q Hk and a
// gated intra term per slot slice, was a fifth of the kernel's time at M = 64
// and a quarter at M = 256; a caller without lse gets pass 1 run again).
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_intra.cuh"
#include "kernels/gsa/gsa_launch.cuh"
#include "kernels/gsa/gsa_mma_sync.cuh"
#include "kernels/gsa/gsa_pipeline.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels::gsa_cuda {
namespace {

// Shared memory of bwd_scores. A header (R = <p, dp> and the rows' lse per
// token, then the decay's segment sums) and two layouts over the rest:
//  - DP phase and q k^T: fp32 DP (one slot slice), A = dO v^T then q k^T, Us
//    (the slice's raw g and s as they arrive, then a k tile of the q k^T
//    pipeline), the loop region (the pipelines' second buffer set, then the
//    slice's decay and s in fp32), Op (a state tile, then a q tile), Xs and Ys;
//  - local gradients: Ow = scale e^G du and Pw = p e^G over all M slots in T
//    (the operands of dHk and dHv), two token tiles, and a staging area (an
//    fp32 tile for fp32 inputs, the warps' 512-byte store areas for 16-bit).
//    With one slot slice DP is still live there, so Ow, Pw, the tiles and the
//    staging sit in Op, A, Xs / Ys and Us; with several they start after the
//    header.
// Two blocks per SM at any M (113 KB at bf16). The decay and s rows are an even
// number of floats (ld_of): the intra helpers read two slots per load.
template <typename T>
struct ScoresSmem {
  int MS, ldd, lda, lde, ldx, ldw;
  size_t off_dp, off_a, off_us, off_loop, off_op, total;
  size_t off_w, off_tiles, off_stage;  // the local-gradient layout with several slices
  __host__ __device__ static constexpr size_t up(size_t x) { return (x + 127) / 128 * 128; }
  static constexpr int kStageLd = ld_of<float>(kTile);
  __host__ __device__ explicit ScoresSmem(int M)
      : MS(slice_of(M)), ldd(ld_of<float>(slice_of(M))), lda(ld_of<float>(kChunk)),
        lde(ld_of<float>(slice_of(M))), ldx(ld_of<T>(kTile)), ldw(ld_of<T>(M)) {
    const size_t tile = static_cast<size_t>(kChunk) * ldx * sizeof(T);
    off_dp = up((2 * kChunk + kThreads) * sizeof(float));  // R, Lse, segment sums
    off_a = up(off_dp + static_cast<size_t>(kChunk) * ldd * sizeof(float));
    off_us = up(off_a + static_cast<size_t>(kChunk) * lda * sizeof(float));
    // Us: g and s of a slice, a k tile, then the local gradients' staging (one slice).
    off_loop = up(off_us + max_of(max_of(2 * static_cast<size_t>(kChunk) * MS * sizeof(T), tile),
                                  sizeof(T) == 4 ? kChunk * kStageLd * sizeof(float) : 0));
    off_op = up(off_loop + max_of(2 * static_cast<size_t>(kChunk) * lde * sizeof(float),
                                  3 * tile));
    total = off_op + tile +
            max_of(2 * tile, gated_scores_scratch_floats(MS) * sizeof(float));
    const size_t w = static_cast<size_t>(kChunk) * ldw * sizeof(T);
    off_w = off_dp;
    off_tiles = up(off_w + 2 * w);
    off_stage = off_tiles + 2 * tile;
    // The staging: fp32 tiles for fp32 inputs, the warps' store_acc_rows areas for 16-bit.
    if (M > MS)
      total = max_of(total, off_stage + (sizeof(T) == 4 ? kChunk * kStageLd * 4
                                                         : (kThreads / 32) * kAccStageBytes<T, 2>));
  }
  __host__ __device__ size_t bytes() const { return total; }
};

template <typename T>
__global__ void __launch_bounds__(kThreads, 2) bwd_scores_kernel(
    ChunkMap cm, int H, int K, int V, int M, float scale, const T* __restrict__ q,
    const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ s,
    const T* __restrict__ g, const T* __restrict__ dout, const float* __restrict__ p,
    const float* __restrict__ lse, const T* __restrict__ hv, float* __restrict__ du,
    float* __restrict__ dgca, T* __restrict__ dhk, T* __restrict__ dhv,
    float* __restrict__ qk_out, float* __restrict__ dov_out, T* __restrict__ ow_out,
    T* __restrict__ pw_out) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr bool kTC = sizeof(T) == 2;  // TF32 tensor cores for the intra-chunk products
  const ScoresSmem<T> L_(M);
  const int MS = L_.MS;
  float* R = reinterpret_cast<float*>(smem_raw);
  float* Lse = R + kChunk;
  float* Seg = Lse + kChunk;
  float* DP = reinterpret_cast<float*>(smem_raw + L_.off_dp);
  float* A = reinterpret_cast<float*>(smem_raw + L_.off_a);
  float* Us = reinterpret_cast<float*>(smem_raw + L_.off_us);
  float* Gs = reinterpret_cast<float*>(smem_raw + L_.off_loop);
  float* Ss = Gs + kChunk * L_.lde;
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

  // The state tiles of the score products sit in Zs = Op (and Z1); the dO tiles
  // are loaded once for the two products that share them.
  T* Zs = Op;
  const int nv = V / kTile, nk = K / kTile;
  // Per slot slice: DP = dO Hv^T (pipelined over V; the first slice also computes
  // A = dO v^T from the same dO tiles), its gated intra term, and the slice's
  // share of R = <p, dp>. With more than one slice, each finished DP slice waits
  // in du's rows (the local-gradient phase reads it there), so the fp32 score
  // buffers are one slice wide whatever M is.
  const bool sliced = M > MS;
  const int64_t pair = unit * kChunk * kChunk;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int t = threadIdx.x; t < kChunk; t += blockDim.x)
    Lse[t] = t < cp.L ? lse[(cp.tok0 + t) * H + h] : 0.f;
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
    // Row t's R stays with one lane; a sliced DP row goes to du in the same pass
    // (a separate copy loop, index division included, was a fifth of the
    // kernel's instructions). A warp's p loads for kRowBatch rows are issued
    // together: one round trip per batch (MS is 32 or 64: at most two per lane
    // and row).
    constexpr int kRowBatch = 4, kWarps = kThreads / 32;
    for (int tb = warp; tb < kChunk; tb += kRowBatch * kWarps) {
      float pv[kRowBatch][2], acc[kRowBatch];
#pragma unroll
      for (int r = 0; r < kRowBatch; ++r) {
        const int t = tb + r * kWarps;
        const int64_t row = tokM + t * rowM + m0;
        acc[r] = 0.f;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int m = lane + 32 * i;
          pv[r][i] = t < cp.L && m < MS ? p[row + m] : 0.f;
        }
      }
#pragma unroll
      for (int r = 0; r < kRowBatch; ++r) {
        const int t = tb + r * kWarps;
        const int64_t row = tokM + t * rowM + m0;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int m = lane + 32 * i;
          if (t < cp.L && m < MS) {
            const float dp = DP[t * L_.ldd + m];
            acc[r] += pv[r][i] * dp;
            if (sliced) du[row + m] = dp;
          }
        }
        for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
        if (lane == 0) R[t] = m0 == 0 ? acc[r] : R[t] + acc[r];
      }
    }
    __syncthreads();
  }
  // A1 = q k^T (unscaled: bwd_pairs applies the scale), pipelined over K: the
  // second buffer set is Op and Us, so the loop region keeps the slice's decay.
  {
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
  __syncthreads();  // A is Pw's area with one slice

  // Local state gradients over all M slots at once: Ow = scale e^G du and
  // Pw = p e^G for every slot, then dHk = q^T Ow one q tile at a time and
  // dHv = Pw^T dO one dO tile at a time (each token tile is copied once; per
  // slot slice they were copied M / 64 times, each copy a wait and a barrier).
  const int ldw = L_.ldw;
  T* Ow = sliced ? reinterpret_cast<T*>(smem_raw + L_.off_w) : Op;
  T* Pw = sliced ? Ow + kChunk * ldw : reinterpret_cast<T*>(A);
  T* Tk0 = sliced ? reinterpret_cast<T*>(smem_raw + L_.off_tiles) : Xs;
  T* Tk1 = Tk0 + kChunk * L_.ldx;
  float* Stage = sliced ? reinterpret_cast<float*>(smem_raw + L_.off_stage) : Us;
  auto token_tile = [&](int z, T* dst) {  // q tiles, then dO tiles
    if (z < nk) async_tile(dst, L_.ldx, q + tokK + z * kTile, rowK, kChunk, cp.L, kTile);
    else async_tile(dst, L_.ldx, dout + tokV + (z - nk) * kTile, rowV, kChunk, cp.L, kTile);
  };
  // With ow_out the reverse walk forms the state gradients from Ow and Pw.
  const bool to_walk = ow_out != nullptr;
  if (!to_walk) token_tile(0, Tk0);
  {
    // du, p dp + u du and the operands, one slot per thread and a segment of the
    // chunk's tokens, the decay G summed along it (after the segments before it).
    // M divides kThreads for every supported slot count (32 to 256, gsa_cuda_table).
    const int nseg = kThreads / M > 0 ? kThreads / M : 1, seg_len = kChunk / nseg;
    const int m = threadIdx.x % M, seg = threadIdx.x / M;
    const bool active = seg < nseg;
    const int ta = seg * seg_len, tb = min(ta + seg_len, cp.L);
    // Only the segments before the last need their sums (none at M = 256).
    if (nseg > 1) {
      float gsum = 0.f;
      if (seg < nseg - 1)
        for (int t = ta; t < tb; ++t) gsum += to_f(g[tokM + t * rowM + m]);
      if (active) Seg[seg * M + m] = gsum;
      __syncthreads();
    }
    if (active) {
      float G = 0.f;
      for (int j = 0; j < seg; ++j) G += Seg[j * M + m];
      // kBatch tokens' g, p and dp loaded before any is used: one memory round
      // trip per batch instead of one per token (Nsight Compute at M = 256: this
      // loop's wait on p was the kernel's largest stall). seg_len (8 to 64) is a
      // multiple of kBatch.
      constexpr int kBatch = 4;
      for (int t0 = ta; t0 < ta + seg_len; t0 += kBatch) {
        float gv[kBatch], pv[kBatch], dpv[kBatch];
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
          const int t = t0 + i;
          const int64_t at = tokM + t * rowM + m;
          const bool ok = t < cp.L;
          gv[i] = ok ? to_f(g[at]) : 0.f;
          pv[i] = ok ? p[at] : 0.f;
          dpv[i] = ok ? (sliced ? du[at] : DP[t * L_.ldd + m]) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
          const int t = t0 + i;
          const float pt = pv[i], dp = dpv[i];
          float d = 0.f;
          G += gv[i];
          if (t < cp.L) {
            const int64_t at = tokM + t * rowM + m;
            d = pt * (dp - R[t]);
            du[at] = d;
            // u du is 0 where p underflowed to 0 (du = p (dp - R) is 0 there too).
            // (__logf, a few ulp off: far below the bf16 rounding of the products
            // u du feeds; logf was a sixth of this file's instructions.)
            const float u = pt > 0.f ? __logf(pt) + Lse[t] : 0.f;
            dgca[at] = fmaf(pt, dp, u * d);
          }
          const float eg = __expf(G);
          Ow[t * ldw + m] = from_f<T>(scale * eg * d);
          Pw[t * ldw + m] = from_f<T>(pt * eg);
        }
      }
    }
  }
  if (to_walk) {  // Ow and Pw out, 16 bytes at a time; rows >= L stay unwritten
    __syncthreads();
    const int pieces = M * static_cast<int>(sizeof(T)) / 16;  // per row
    for (int idx = threadIdx.x; idx < cp.L * pieces; idx += blockDim.x) {
      const int t = idx / pieces, c = (idx - t * pieces) * (16 / static_cast<int>(sizeof(T)));
      const int64_t at = tokM + t * rowM + c;
      *reinterpret_cast<uint4*>(ow_out + at) = *reinterpret_cast<const uint4*>(Ow + t * ldw + c);
      *reinterpret_cast<uint4*>(pw_out + at) = *reinterpret_cast<const uint4*>(Pw + t * ldw + c);
    }
    return;
  }
  // (Tile 0 is already on its way; the pipeline's first wait covers it.)
  pipelined_steps(
      nk + nv,
      [&](int z, int b) {
        if (z > 0) token_tile(z, b ? Tk1 : Tk0);
      },
      [&](int z, int b) {
        const T* X = b ? Tk1 : Tk0;
        if constexpr (kTC) {
          // Register tiles to global memory (mma.sync), through per-warp staging
          // (Stage: Us with one slice, free once q k^T is done); no block barrier.
          T* stage = reinterpret_cast<T*>(Stage);
          if (z < nk)
            tokens_product_to_global(dhk + unit * KM + static_cast<int64_t>(z) * kTile * M, M, X,
                                     L_.ldx, Ow, ldw, kTile, M, stage);
          else
            tokens_product_to_global(dhv + unit * MV + (z - nk) * kTile, V, Pw, ldw, X, L_.ldx,
                                     M, kTile, stage);
        } else {
          // Through the fp32 staging tile, 64 slots at a time.
          for (int c0 = 0; c0 < M; c0 += MS) {
            if (z < nk) {
              block_mma<true, false>(Stage, L_.kStageLd, X, L_.ldx, Ow + c0, ldw, kTile, MS,
                                     kChunk, false);
              __syncthreads();
              store_tile(dhk + unit * KM + static_cast<int64_t>(z) * kTile * M + c0, M, Stage,
                         L_.kStageLd, kTile, MS);
            } else {
              block_mma<true, false>(Stage, L_.kStageLd, Pw + c0, ldw, X, L_.ldx, MS, kTile,
                                     kChunk, false);
              __syncthreads();
              store_tile(dhv + unit * MV + static_cast<int64_t>(c0) * V + (z - nk) * kTile, V,
                         Stage, L_.kStageLd, MS, kTile);
            }
            __syncthreads();
          }
        }
      });
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
      lse, static_cast<const T*>(pl.hv), b.du, b.dgca,
      static_cast<T*>(b.dhk), static_cast<T*>(b.dhv), b.bm, b.a2, static_cast<T*>(b.ow),
      static_cast<T*>(b.pw));
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
