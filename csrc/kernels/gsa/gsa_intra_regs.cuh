// The intra-chunk gated products of gsa_intra.cuh for 16-bit inputs, with
// register accumulators: one warp per 16 x 8 output tile, TF32 mma.sync on
// operands that each thread builds in registers straight from the fp32 shared
// tiles, decay factor included.
//
// The shared-memory form wrote the decayed operands of every sub-chunk to a
// scratch area, multiplied them there with WMMA and added the result back:
// three phases and two barriers per sub-chunk, with one to three warps of eight
// busy in each product (Nsight Compute: 76% of bwd_pairs' stall samples sat in
// those helpers). Here a warp owns its output elements from start to end: the
// off-diagonal sum of its tile on the tensor cores (the factorisation of
// gsa_intra.cuh: e^{G_t - G_i} = e^{G_t - G_r} e^{G_r - G_i}, both factors <= 1),
// the diagonal block split once more (the half of it below its own 8 x 8
// diagonal blocks is one more product, referenced at the block's eighth row),
// the two 8 x 8 diagonal blocks pair by pair, one store. A call is one phase and
// one barrier, and needs no scratch.
//
// Fragment positions (mma_1688, g = lane / 4, q = lane % 4): a warp's tile has
// rows r0 + g and r0 + g + 8, columns c0 + 2q and c0 + 2q + 1; its A operand
// elements are (row, k) = (g | g + 8, q | q + 4), its B operand elements
// (k, column) = (q | q + 4, g).
#pragma once

#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_mma_sync.cuh"

namespace ravensp::kernels::gsa_cuda {

constexpr int kSub = 16;  // sub-chunk rows

// Slots m and m + 1 (m even) of a row: one 8-byte load when the rows are an even
// number of floats (ld_of), else two (the odd rows of ld_ew). vec is uniform.
__device__ __forceinline__ float2 pair_at(const float* p, bool vec) {
  return vec ? *reinterpret_cast<const float2*>(p) : make_float2(p[0], p[1]);
}

// Each product is a set of warp jobs (one 16 x 8 output tile each): *_job(job,
// ...) computes one, and the *_regs form runs all of them over the block's warps
// and ends with a barrier. A kernel with two independent products can run both
// job sets in one phase instead (gated_pairs_and_rev_sums).
// Jobs of gated_scores and gated_rev_sums at slot slice ms: (sub-chunk, 8 slots).
__host__ __device__ constexpr int intra_jobs(int ms) { return (kChunk / kSub) * (ms / 8); }
// Jobs of gated_pairs: (sub-chunk of rows, 8 columns) of the 64 x 64 pair matrix.
constexpr int kPairsJobs = (kChunk / kSub) * (kChunk / 8);

// out[t][m] = mult * (e^{G_tm} X[t][m] + sum_{i<=t} A[t][i] S[i][m] e^{G_tm - G_im})
// for t < L, one warp per (16-row sub-chunk, 8 slots). ms a multiple of 8.
__device__ __forceinline__ void gated_scores_job(int job, float* out, int ldo, const float* X,
                                                 int ldx, const float* A, int lda, const float* G,
                                                 const float* S, int lde, int L, int ms,
                                                 float mult) {
  const int lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3, nj = ms >> 3;
  const int a = job / nj, c0 = (job - a * nj) * 8, base = a * kSub;
  if (base >= L) return;
  const int t0 = base + gq, t1 = t0 + 8, m0 = c0 + 2 * tq, m1 = m0 + 1;
  const float g00 = G[t0 * lde + m0], g01 = G[t0 * lde + m1];
  const float g10 = G[t1 * lde + m0], g11 = G[t1 * lde + m1];
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if (base > 0) {
    // Every row before the sub-chunk, referenced at r = base - 1.
    const int r = base - 1, n = c0 + gq;
    const float grn = G[r * lde + n];
    for (int k0 = 0; k0 < base; k0 += 8) {
      const int i0 = k0 + tq, i1 = i0 + 4;
      const uint32_t af[4] = {to_tf32(A[t0 * lda + i0]), to_tf32(A[t1 * lda + i0]),
                              to_tf32(A[t0 * lda + i1]), to_tf32(A[t1 * lda + i1])};
      const uint32_t bf[2] = {to_tf32(S[i0 * lde + n] * __expf(grn - G[i0 * lde + n])),
                              to_tf32(S[i1 * lde + n] * __expf(grn - G[i1 * lde + n]))};
      mma_1688(acc, af, bf);
    }
    const float r0 = G[r * lde + m0], r1 = G[r * lde + m1];
    acc[0] *= __expf(g00 - r0);
    acc[1] *= __expf(g01 - r1);
    acc[2] *= __expf(g10 - r0);
    acc[3] *= __expf(g11 - r1);
  }
  // The diagonal block. Rows t1 against its first half [base, base + 8) as one
  // more product, referenced at r = base + 7; the two 8 x 8 diagonal blocks
  // pair by pair (at most eight pairs per element instead of sixteen).
  {
    const int r = base + 7, n = c0 + gq, ia = base + tq, ib = ia + 4;
    const float grn = G[r * lde + n];
    const uint32_t af[4] = {0u, to_tf32(A[t1 * lda + ia]), 0u, to_tf32(A[t1 * lda + ib])};
    const uint32_t bf[2] = {to_tf32(S[ia * lde + n] * __expf(grn - G[ia * lde + n])),
                            to_tf32(S[ib * lde + n] * __expf(grn - G[ib * lde + n]))};
    float half[4] = {0.f, 0.f, 0.f, 0.f};
    mma_1688(half, af, bf);
    acc[2] = fmaf(half[2], __expf(g10 - G[r * lde + m0]), acc[2]);
    acc[3] = fmaf(half[3], __expf(g11 - G[r * lde + m1]), acc[3]);
  }
  const bool vec = (lde & 1) == 0;
  for (int j = 0; j <= gq; ++j) {
    const int i = base + j, i1 = i + 8;
    const float w0 = A[t0 * lda + i], w1 = A[t1 * lda + i1];
    const float2 s0 = pair_at(S + i * lde + m0, vec), e0 = pair_at(G + i * lde + m0, vec);
    const float2 s1 = pair_at(S + i1 * lde + m0, vec), e1 = pair_at(G + i1 * lde + m0, vec);
    acc[0] = fmaf(w0 * s0.x, __expf(g00 - e0.x), acc[0]);
    acc[1] = fmaf(w0 * s0.y, __expf(g01 - e0.y), acc[1]);
    acc[2] = fmaf(w1 * s1.x, __expf(g10 - e1.x), acc[2]);
    acc[3] = fmaf(w1 * s1.y, __expf(g11 - e1.y), acc[3]);
  }
  // X and out may alias: each element is read and written by this thread only.
  if (t0 < L) {
    out[t0 * ldo + m0] = mult * fmaf(__expf(g00), X[t0 * ldx + m0], acc[0]);
    out[t0 * ldo + m1] = mult * fmaf(__expf(g01), X[t0 * ldx + m1], acc[1]);
  }
  if (t1 < L) {
    out[t1 * ldo + m0] = mult * fmaf(__expf(g10), X[t1 * ldx + m0], acc[2]);
    out[t1 * ldo + m1] = mult * fmaf(__expf(g11), X[t1 * ldx + m1], acc[3]);
  }
}

__device__ __forceinline__ void gated_scores_regs(float* out, int ldo, const float* X, int ldx,
                                                  const float* A, int lda, const float* G,
                                                  const float* S, int lde, int L, int ms,
                                                  float mult) {
  for (int job = threadIdx.x >> 5; job < intra_jobs(ms); job += blockDim.x >> 5)
    gated_scores_job(job, out, ldo, X, ldx, A, lda, G, S, lde, L, ms, mult);
  __syncthreads();
}

// out[i][m] = sum_{i<=t<L} (A[t][i] X[t][m] + B[t][i] Y[t][m]) e^{G_tm - G_im} for
// i < L (B, Y may be null), one warp per (16-row sub-chunk, 8 slots).
__device__ __forceinline__ void gated_rev_sums_job(int job, float* out, int ldo, const float* A,
                                                   const float* X, const float* B, const float* Y,
                                                   int lda, const float* G, int lde, int L,
                                                   int ms) {
  const int lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3, nj = ms >> 3;
  const int tend = min(kChunk, (L + 7) & ~7);  // rows >= L of A, B, X, Y are zero
  const int b = job / nj, c0 = (job - b * nj) * 8, base = b * kSub;
  if (base >= L) return;
  const int i0 = base + gq, i1 = i0 + 8, m0 = c0 + 2 * tq, m1 = m0 + 1;
  const float g00 = G[i0 * lde + m0], g01 = G[i0 * lde + m1];
  const float g10 = G[i1 * lde + m0], g11 = G[i1 * lde + m1];
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if (base + kSub < tend) {
    // Every row after the sub-chunk, referenced at its last row r.
    const int r = base + kSub - 1, n = c0 + gq;
    const float grn = G[r * lde + n];
    for (int k0 = base + kSub; k0 < tend; k0 += 8) {
      const int ta = k0 + tq, tb = ta + 4;
      const float wa = __expf(G[ta * lde + n] - grn), wb = __expf(G[tb * lde + n] - grn);
      {
        const uint32_t af[4] = {to_tf32(A[ta * lda + i0]), to_tf32(A[ta * lda + i1]),
                                to_tf32(A[tb * lda + i0]), to_tf32(A[tb * lda + i1])};
        const uint32_t bf[2] = {to_tf32(X[ta * lde + n] * wa), to_tf32(X[tb * lde + n] * wb)};
        mma_1688(acc, af, bf);
      }
      if (B != nullptr) {
        const uint32_t af[4] = {to_tf32(B[ta * lda + i0]), to_tf32(B[ta * lda + i1]),
                                to_tf32(B[tb * lda + i0]), to_tf32(B[tb * lda + i1])};
        const uint32_t bf[2] = {to_tf32(Y[ta * lde + n] * wa), to_tf32(Y[tb * lde + n] * wb)};
        mma_1688(acc, af, bf);
      }
    }
    const float r0 = G[r * lde + m0], r1 = G[r * lde + m1];
    acc[0] *= __expf(r0 - g00);
    acc[1] *= __expf(r1 - g01);
    acc[2] *= __expf(r0 - g10);
    acc[3] *= __expf(r1 - g11);
  }
  // The diagonal block. Rows i0 against its second half [base + 8, base + 16)
  // as one more product, referenced at r = base + 7; the two 8 x 8 diagonal
  // blocks pair by pair.
  {
    const int r = base + 7, n = c0 + gq, ta = base + 8 + tq, tb = ta + 4;
    const float grn = G[r * lde + n];
    const float wa = __expf(G[ta * lde + n] - grn), wb = __expf(G[tb * lde + n] - grn);
    float half[4] = {0.f, 0.f, 0.f, 0.f};
    {
      const uint32_t af[4] = {to_tf32(A[ta * lda + i0]), 0u, to_tf32(A[tb * lda + i0]), 0u};
      const uint32_t bf[2] = {to_tf32(X[ta * lde + n] * wa), to_tf32(X[tb * lde + n] * wb)};
      mma_1688(half, af, bf);
    }
    if (B != nullptr) {
      const uint32_t af[4] = {to_tf32(B[ta * lda + i0]), 0u, to_tf32(B[tb * lda + i0]), 0u};
      const uint32_t bf[2] = {to_tf32(Y[ta * lde + n] * wa), to_tf32(Y[tb * lde + n] * wb)};
      mma_1688(half, af, bf);
    }
    acc[0] = fmaf(half[0], __expf(G[r * lde + m0] - g00), acc[0]);
    acc[1] = fmaf(half[1], __expf(G[r * lde + m1] - g01), acc[1]);
  }
  const bool vec = (lde & 1) == 0;
  for (int j = gq; j < 8; ++j) {
    const int t = base + j, t1 = t + 8;
    const float a0 = A[t * lda + i0], a1 = A[t1 * lda + i1];
    const float2 x0 = pair_at(X + t * lde + m0, vec), x1 = pair_at(X + t1 * lde + m0, vec);
    float u00 = a0 * x0.x, u01 = a0 * x0.y;
    float u10 = a1 * x1.x, u11 = a1 * x1.y;
    if (B != nullptr) {
      const float b0 = B[t * lda + i0], b1 = B[t1 * lda + i1];
      const float2 y0 = pair_at(Y + t * lde + m0, vec), y1 = pair_at(Y + t1 * lde + m0, vec);
      u00 = fmaf(b0, y0.x, u00);
      u01 = fmaf(b0, y0.y, u01);
      u10 = fmaf(b1, y1.x, u10);
      u11 = fmaf(b1, y1.y, u11);
    }
    const float2 e0 = pair_at(G + t * lde + m0, vec), e1 = pair_at(G + t1 * lde + m0, vec);
    acc[0] = fmaf(u00, __expf(e0.x - g00), acc[0]);
    acc[1] = fmaf(u01, __expf(e0.y - g01), acc[1]);
    acc[2] = fmaf(u10, __expf(e1.x - g10), acc[2]);
    acc[3] = fmaf(u11, __expf(e1.y - g11), acc[3]);
  }
  if (i0 < L) {
    out[i0 * ldo + m0] = acc[0];
    out[i0 * ldo + m1] = acc[1];
  }
  if (i1 < L) {
    out[i1 * ldo + m0] = acc[2];
    out[i1 * ldo + m1] = acc[3];
  }
}

__device__ __forceinline__ void gated_rev_sums_regs(float* out, int ldo, const float* A,
                                                    const float* X, const float* B,
                                                    const float* Y, int lda, const float* G,
                                                    int lde, int L, int ms) {
  for (int job = threadIdx.x >> 5; job < intra_jobs(ms); job += blockDim.x >> 5)
    gated_rev_sums_job(job, out, ldo, A, X, B, Y, lda, G, lde, L, ms);
  __syncthreads();
}

// R1[t][i] (+)= sum_m X1[t][m] S[i][m] e^{G_tm - G_im} for i <= t, and R2 with X2
// (both may be null), one warp per (16-row sub-chunk, 8 columns) of the 64 x 64
// pair matrix. Entries i > t are zeroed (accumulate = false) or left (they are
// 0 already); rows >= L of X1, X2 must be zero. ldr even.
__device__ __forceinline__ void gated_pairs_job(int job, float* R1, const float* X1, float* R2,
                                                const float* X2, int ldr, const float* G,
                                                const float* S, int lde, int ms,
                                                bool accumulate) {
  const int lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  constexpr int kRowTiles = kChunk / kSub;
  // Warp w takes row tile w % 4: with eight warps each has one diagonal tile.
  const int a = job % kRowTiles, j8 = job / kRowTiles, b = j8 * 8 / kSub;
  const int t0 = a * kSub + gq, t1 = t0 + 8, i0 = j8 * 8 + 2 * tq;
  float* p10 = R1 + t0 * ldr + i0;
  float* p11 = R1 + t1 * ldr + i0;
  float* p20 = R2 != nullptr ? R2 + t0 * ldr + i0 : nullptr;
  float* p21 = R2 != nullptr ? R2 + t1 * ldr + i0 : nullptr;
  if (b > a) {  // above the diagonal
    if (!accumulate) {
      *reinterpret_cast<float2*>(p10) = make_float2(0.f, 0.f);
      *reinterpret_cast<float2*>(p11) = make_float2(0.f, 0.f);
      if (R2 != nullptr) {
        *reinterpret_cast<float2*>(p20) = make_float2(0.f, 0.f);
        *reinterpret_cast<float2*>(p21) = make_float2(0.f, 0.f);
      }
    }
    return;
  }
  float c1[4] = {0.f, 0.f, 0.f, 0.f}, c2[4] = {0.f, 0.f, 0.f, 0.f};
  // The sum over the slots of rows (t0, t1 when both) against columns n, all of
  // them before the reference row r and the rows after it, on the tensor cores.
  auto product = [&](int r, bool both) {
    const int n = j8 * 8 + gq;
    for (int k0 = 0; k0 < ms; k0 += 8) {
      const int ma = k0 + tq, mb = ma + 4;
      const float ra = G[r * lde + ma], rb = G[r * lde + mb];
      const float w0a = both ? __expf(G[t0 * lde + ma] - ra) : 0.f;
      const float w0b = both ? __expf(G[t0 * lde + mb] - rb) : 0.f;
      const float w1a = __expf(G[t1 * lde + ma] - ra), w1b = __expf(G[t1 * lde + mb] - rb);
      const uint32_t bf[2] = {to_tf32(S[n * lde + ma] * __expf(ra - G[n * lde + ma])),
                              to_tf32(S[n * lde + mb] * __expf(rb - G[n * lde + mb]))};
      {
        const uint32_t af[4] = {both ? to_tf32(X1[t0 * lde + ma] * w0a) : 0u,
                                to_tf32(X1[t1 * lde + ma] * w1a),
                                both ? to_tf32(X1[t0 * lde + mb] * w0b) : 0u,
                                to_tf32(X1[t1 * lde + mb] * w1b)};
        mma_1688(c1, af, bf);
      }
      if (X2 != nullptr) {
        const uint32_t af[4] = {both ? to_tf32(X2[t0 * lde + ma] * w0a) : 0u,
                                to_tf32(X2[t1 * lde + ma] * w1a),
                                both ? to_tf32(X2[t0 * lde + mb] * w0b) : 0u,
                                to_tf32(X2[t1 * lde + mb] * w1b)};
        mma_1688(c2, af, bf);
      }
    }
  };
  // One row of an 8 x 8 diagonal block pair by pair (e = 0: row t0 into
  // elements 0, 1; e = 2: row t1 into 2, 3); pairs above the diagonal weigh 0
  // (their exponent is positive, so it is never taken).
  auto diagonal = [&](int t, int e) {
    const bool v0 = i0 <= t, v1 = i0 + 1 <= t;
    if ((lde & 3) == 0 && (ms & 3) == 0) {
      // Four slots per step by 16-byte loads (rows of a multiple of four floats,
      // ld_of): a quarter of the shared loads. A pair above the diagonal sums
      // whatever its (unbounded) weights give and is zeroed once at the end,
      // instead of a select per pair and slot.
      auto ld4 = [](const float* p) { return *reinterpret_cast<const float4*>(p); };
      float a0 = 0.f, a1 = 0.f, b0 = 0.f, b1 = 0.f;
      for (int m = 0; m < ms; m += 4) {
        const float4 gt = ld4(G + t * lde + m), x = ld4(X1 + t * lde + m);
        const float4 s0 = ld4(S + i0 * lde + m), g0 = ld4(G + i0 * lde + m);
        const float4 s1 = ld4(S + (i0 + 1) * lde + m), g1 = ld4(G + (i0 + 1) * lde + m);
        const float w00 = s0.x * __expf(gt.x - g0.x), w01 = s1.x * __expf(gt.x - g1.x);
        const float w10 = s0.y * __expf(gt.y - g0.y), w11 = s1.y * __expf(gt.y - g1.y);
        const float w20 = s0.z * __expf(gt.z - g0.z), w21 = s1.z * __expf(gt.z - g1.z);
        const float w30 = s0.w * __expf(gt.w - g0.w), w31 = s1.w * __expf(gt.w - g1.w);
        a0 = fmaf(x.x, w00, fmaf(x.y, w10, fmaf(x.z, w20, fmaf(x.w, w30, a0))));
        a1 = fmaf(x.x, w01, fmaf(x.y, w11, fmaf(x.z, w21, fmaf(x.w, w31, a1))));
        if (X2 != nullptr) {
          const float4 y = ld4(X2 + t * lde + m);
          b0 = fmaf(y.x, w00, fmaf(y.y, w10, fmaf(y.z, w20, fmaf(y.w, w30, b0))));
          b1 = fmaf(y.x, w01, fmaf(y.y, w11, fmaf(y.z, w21, fmaf(y.w, w31, b1))));
        }
      }
      c1[e] += v0 ? a0 : 0.f;
      c1[e + 1] += v1 ? a1 : 0.f;
      c2[e] += v0 ? b0 : 0.f;
      c2[e + 1] += v1 ? b1 : 0.f;
      return;
    }
    for (int m = 0; m < ms; ++m) {
      const float gt = G[t * lde + m];
      const float w0 = v0 ? S[i0 * lde + m] * __expf(gt - G[i0 * lde + m]) : 0.f;
      const float w1 = v1 ? S[(i0 + 1) * lde + m] * __expf(gt - G[(i0 + 1) * lde + m]) : 0.f;
      const float x = X1[t * lde + m];
      c1[e] = fmaf(x, w0, c1[e]);
      c1[e + 1] = fmaf(x, w1, c1[e + 1]);
      if (X2 != nullptr) {
        const float y = X2[t * lde + m];
        c2[e] = fmaf(y, w0, c2[e]);
        c2[e + 1] = fmaf(y, w1, c2[e + 1]);
      }
    }
  };
  if (b < a) {
    product(a * kSub - 1, true);  // an earlier sub-chunk, referenced at r = 16a - 1
  } else if (j8 % 2 == 0) {
    // The diagonal tile's left half: rows t1 are past its first eight rows
    // (a product referenced at r = 16a + 7), rows t0 its 8 x 8 diagonal block.
    product(a * kSub + 7, false);
    diagonal(t0, 0);
  } else {
    diagonal(t1, 2);  // the right half: rows t0 are above the diagonal
  }
  auto put = [&](float* p, float x, float y) {
    float2 v = make_float2(x, y);
    if (accumulate) {
      const float2 old = *reinterpret_cast<const float2*>(p);
      v.x += old.x;
      v.y += old.y;
    }
    *reinterpret_cast<float2*>(p) = v;
  };
  put(p10, c1[0], c1[1]);
  put(p11, c1[2], c1[3]);
  if (R2 != nullptr) {
    put(p20, c2[0], c2[1]);
    put(p21, c2[2], c2[3]);
  }
}

__device__ __forceinline__ void gated_pairs_regs(float* R1, const float* X1, float* R2,
                                                 const float* X2, int ldr, const float* G,
                                                 const float* S, int lde, int ms,
                                                 bool accumulate) {
  for (int job = threadIdx.x >> 5; job < kPairsJobs; job += blockDim.x >> 5)
    gated_pairs_job(job, R1, X1, R2, X2, ldr, G, S, lde, ms, accumulate);
  __syncthreads();
}

// gated_pairs (R1, X1; accumulate) and gated_rev_sums (out from A, X, B, Y) of
// the same decay G and slot slice in one phase: both only read what is already
// in shared memory and write disjoint buffers, so one barrier serves both, and
// the job order evens the warps' work out: at 16-slot slices (bwd_pairs) warp w
// of eight gets the rev_sums job of sub-chunk w / 2 (the earlier sub-chunks
// have the longest sums) and then the pairs jobs of row tile w % 4 (the later
// tiles have the most off-diagonal products).
__device__ __forceinline__ void gated_pairs_and_rev_sums(float* R1, const float* X1, int ldr,
                                                         const float* S, bool accumulate,
                                                         float* out, int ldo, const float* A,
                                                         const float* X, const float* B,
                                                         const float* Y, int lda, const float* G,
                                                         int lde, int L, int ms) {
  const int nr = intra_jobs(ms);
  for (int job = threadIdx.x >> 5; job < nr + kPairsJobs; job += blockDim.x >> 5) {
    if (job < nr) gated_rev_sums_job(job, out, ldo, A, X, B, Y, lda, G, lde, L, ms);
    else gated_pairs_job(job - nr, R1, X1, nullptr, nullptr, ldr, G, S, lde, ms, accumulate);
  }
  __syncthreads();
}

}  // namespace ravensp::kernels::gsa_cuda
