// Intra-chunk gated products of GSA on shared memory, factorised by sub-chunk.
//
// Every product here weights a token pair (t, i), i <= t, of slot m by
// exp(G_tm - G_im) <= 1. Done pair by pair this is one exp or one multiply per
// (t, i, m), which made these loops the bulk of the chunk kernels' instructions.
// Split the chunk into four sub-chunks of 16 tokens. For a pair in different
// sub-chunks pick a reference row r with i <= r < t (the last row before t's
// sub-chunk, or the last row of i's): exp(G_t - G_i) = exp(G_t - G_r) exp(G_r - G_i),
// both factors <= 1, so nothing overflows however strong the decay, and the sum
// over the pair becomes a matrix product of decayed operands (tensor cores in
// TF32 for 16-bit inputs, fp32 FMA for fp32 inputs). Only the 16 x 16 diagonal
// blocks stay elementwise (the register form splits each once more: two 8 x 8
// diagonal blocks and one product), each weight taken as exp(G_t - G_i) directly
// (never exp(G_t) * exp(-G_i), which overflows).
//
// Every thread of the block must call a helper, and it ends with a barrier.
// For 16-bit inputs (kTC) each runs the register form of gsa_intra_regs.cuh: one
// phase, no scratch. For fp32 inputs the form below, on shared memory with fp32
// FMA products, which takes a fp32 scratch area (intra_scratch_floats) that must
// not alias its inputs; it is the plain form the register one was checked
// against, and the fp32 tests' exact path.
#pragma once

#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_intra_regs.cuh"

namespace ravensp::kernels::gsa_cuda {

// Leading dimension of the scratch operands for a slot slice of width ms.
__host__ __device__ constexpr int ld_scratch(int ms) { return ms + 4; }
// Floats of scratch the helpers need at slot slice ms (the largest, gated_rev_sums).
__host__ __device__ constexpr size_t intra_scratch_floats(int ms) {
  return static_cast<size_t>(7 * kSub) * ld_scratch(ms);
}
// gated_scores alone needs less (a kernel that calls only it can be smaller).
__host__ __device__ constexpr size_t gated_scores_scratch_floats(int ms) {
  return static_cast<size_t>(4 * kSub) * ld_scratch(ms);
}

// C[m x n] (=|+=) op(A)[m x k] op(B)[k x n] on fp32 shared-memory operands, fp32
// FMA. kTA: A stored [k][m]; kTB: B stored [n][k]. No barrier.
template <bool kTA, bool kTB>
__device__ __forceinline__ void mma_f32(float* C, int ldc, const float* A, int lda,
                                        const float* B, int ldb, int m, int n, int k,
                                        bool accumulate) {
  for (int idx = threadIdx.x; idx < m * n; idx += blockDim.x) {
    const int i = idx / n, j = idx - i * n;
    float acc = accumulate ? C[i * ldc + j] : 0.f;
    for (int kk = 0; kk < k; ++kk)
      acc = fmaf(kTA ? A[kk * lda + i] : A[i * lda + kk], kTB ? B[j * ldb + kk] : B[kk * ldb + j],
                 acc);
    C[i * ldc + j] = acc;
  }
}

// The decayed operands of the off-diagonal products, on the two sides of a
// reference row r. Before: dst[i][m] = S[i][m] exp(G_rm - G_im) for rows i < rows
// (all <= r). After: dX[tt][m] = X[t][m] exp(G_tm - G_rm) for t = t0 + tt, t0 > r,
// and the same for Y into dY when Y is given. No barrier.
__device__ __forceinline__ void decay_before(float* dst, int lds, const float* S, int lde,
                                             const float* G, int r, int rows, int ms) {
  for (int idx = threadIdx.x; idx < rows * ms; idx += blockDim.x) {
    const int i = idx / ms, m = idx - i * ms;
    dst[i * lds + m] = S[i * lde + m] * __expf(G[r * lde + m] - G[i * lde + m]);
  }
}

__device__ __forceinline__ void decay_after(float* dX, const float* X, float* dY, const float* Y,
                                            int lds, int lde, const float* G, int r, int t0,
                                            int rows, int ms) {
  for (int idx = threadIdx.x; idx < rows * ms; idx += blockDim.x) {
    const int tt = idx / ms, m = idx - tt * ms, t = t0 + tt;
    const float w = __expf(G[t * lde + m] - G[r * lde + m]);
    dX[tt * lds + m] = X[t * lde + m] * w;
    if (Y != nullptr) dY[tt * lds + m] = Y[t * lde + m] * w;
  }
}

// Forward-in-time scores for one slot slice [0, ms):
//   out[t][m] = mult * (exp(G_tm) * X[t][m] + sum_{i<=t} A[t][i] S[i][m] exp(G_tm - G_im))
// for t < L (X and out may alias). A is [64][lda] fp32 (lda a multiple of 4);
// G, S are fp32 [64][lde]. Rows >= L of A and S must be zero.
__device__ __forceinline__ void gated_scores_smem(float* out, int ldo, const float* X, int ldx,
                                             const float* A, int lda, const float* G,
                                             const float* S, int lde, int L, int ms, float mult,
                                             float* scratch) {
  // Diagonal blocks and the state term.
  for (int idx = threadIdx.x; idx < L * ms; idx += blockDim.x) {
    const int t = idx / ms, m = idx - t * ms, t0 = t & ~(kSub - 1);
    const float gt = G[t * lde + m];
    float acc = 0.f;
    const float* arow = A + t * lda;
    for (int i = t0; i <= t; ++i)
      acc = fmaf(arow[i] * S[i * lde + m], __expf(gt - G[i * lde + m]), acc);
    out[t * ldo + m] = mult * fmaf(__expf(gt), X[t * ldx + m], acc);
  }
  // Sub-chunk a against all rows before it, referenced at r = 16a - 1.
  const int lds = ld_scratch(ms);
  float* Sg = scratch;                   // [48][lds]
  float* Pr = scratch + 3 * kSub * lds;  // [16][lds]
  for (int a = 1; a < kChunk / kSub; ++a) {
    const int r = a * kSub - 1, rows = a * kSub;
    if (rows >= L) break;
    decay_before(Sg, lds, S, lde, G, r, rows, ms);
    __syncthreads();
    mma_f32<false, false>(Pr, lds, A + rows * lda, lda, Sg, lds, kSub, ms, rows, false);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kSub * ms; idx += blockDim.x) {
      const int tt = idx / ms, m = idx - tt * ms, t = rows + tt;
      if (t < L)
        out[t * ldo + m] += mult * __expf(G[t * lde + m] - G[r * lde + m]) * Pr[tt * lds + m];
    }
  }
  __syncthreads();
}

// Backward-in-time sums for one slot slice:
//   out[i][m] = sum_{t>=i, t<L} (A[t][i] X[t][m] + B[t][i] Y[t][m]) exp(G_tm - G_im)
// for i < L (B, Y may be null). Rows >= L of A, B, X, Y must be zero.
__device__ __forceinline__ void gated_rev_sums_smem(float* out, int ldo, const float* A,
                                               const float* X, const float* B, const float* Y,
                                               int lda, const float* G, int lde, int L, int ms,
                                               float* scratch) {
  for (int idx = threadIdx.x; idx < L * ms; idx += blockDim.x) {
    const int i = idx / ms, m = idx - i * ms;
    const int end = min((i | (kSub - 1)) + 1, L);
    const float gi = G[i * lde + m];
    float acc = 0.f;
    for (int t = i; t < end; ++t) {
      float a = A[t * lda + i] * X[t * lde + m];
      if (B != nullptr) a = fmaf(B[t * lda + i], Y[t * lde + m], a);
      acc = fmaf(a, __expf(G[t * lde + m] - gi), acc);
    }
    out[i * ldo + m] = acc;
  }
  // Sub-chunk b against all rows after it, referenced at its last row r.
  const int lds = ld_scratch(ms);
  float* Xg = scratch;                   // [48][lds]
  float* Yg = scratch + 3 * kSub * lds;  // [48][lds]
  float* Pr = scratch + 6 * kSub * lds;  // [16][lds]
  for (int b = 0; b + 1 < kChunk / kSub; ++b) {
    const int r = b * kSub + kSub - 1, t0 = r + 1, rows = kChunk - t0;
    if (b * kSub >= L) break;
    decay_after(Xg, X, Yg, Y, lds, lde, G, r, t0, rows, ms);
    __syncthreads();
    const float* Ab = A + t0 * lda + b * kSub;
    mma_f32<true, false>(Pr, lds, Ab, lda, Xg, lds, kSub, ms, rows, false);
    if (B != nullptr) {
      __syncthreads();  // the second product accumulates onto the first one's stores
      mma_f32<true, false>(Pr, lds, B + t0 * lda + b * kSub, lda, Yg, lds, kSub, ms, rows,
                                true);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kSub * ms; idx += blockDim.x) {
      const int ii = idx / ms, m = idx - ii * ms, i = b * kSub + ii;
      if (i < L) out[i * ldo + m] += __expf(G[r * lde + m] - G[i * lde + m]) * Pr[ii * lds + m];
    }
  }
  __syncthreads();
}

// Slot-reduced pair products for the lower triangle i <= t, accumulated over
// slot slices (accumulate = false for the first slice):
//   R1[t][i] += sum_m X1[t][m] S[i][m] exp(G_tm - G_im), likewise R2 with X2
// (X2/R2 may be null). Entries i > t are set to 0, and rows t >= L come out 0
// because rows >= L of X1, X2 must be zero. ldr a multiple of 4.
__device__ __forceinline__ void gated_pairs_smem(float* R1, const float* X1, float* R2,
                                            const float* X2, int ldr, const float* G,
                                            const float* S, int lde, int L, int ms,
                                            bool accumulate, float* scratch) {
  // Blocks above the diagonal are zero; the four diagonal blocks elementwise.
  if (!accumulate)
    for (int idx = threadIdx.x; idx < kChunk * kChunk; idx += blockDim.x) {
      const int t = idx / kChunk, i = idx - t * kChunk;
      if (t / kSub < i / kSub) {
        R1[t * ldr + i] = 0.f;
        if (R2 != nullptr) R2[t * ldr + i] = 0.f;
      }
    }
  for (int idx = threadIdx.x; idx < kChunk * kSub; idx += blockDim.x) {
    const int a = idx / (kSub * kSub), t = a * kSub + (idx / kSub) % kSub,
              i = a * kSub + idx % kSub;
    float r1 = 0.f, r2 = 0.f;
    if (i <= t && t < L) {
      const float* gt = G + t * lde;
      const float* gi = G + i * lde;
      const float* si = S + i * lde;
      const float* x1 = X1 + t * lde;
      for (int m = 0; m < ms; ++m) {
        const float w = si[m] * __expf(gt[m] - gi[m]);
        r1 = fmaf(x1[m], w, r1);
        if (X2 != nullptr) r2 = fmaf(X2[t * lde + m], w, r2);
      }
    }
    R1[t * ldr + i] = accumulate ? R1[t * ldr + i] + r1 : r1;
    if (R2 != nullptr) R2[t * ldr + i] = accumulate ? R2[t * ldr + i] + r2 : r2;
  }
  // Rows of sub-chunk a against all columns before it, referenced at r = 16a - 1.
  const int lds = ld_scratch(ms);
  float* Sg = scratch;                    // [48][lds]
  float* X1g = scratch + 3 * kSub * lds;  // [16][lds]
  float* X2g = scratch + 4 * kSub * lds;  // [16][lds]
  for (int a = 1; a < kChunk / kSub; ++a) {
    const int r = a * kSub - 1, rows = a * kSub;
    decay_before(Sg, lds, S, lde, G, r, rows, ms);
    decay_after(X1g, X1, X2g, X2, lds, lde, G, r, rows, kSub, ms);
    __syncthreads();
    mma_f32<false, true>(R1 + rows * ldr, ldr, X1g, lds, Sg, lds, kSub, rows, ms, accumulate);
    if (X2 != nullptr)
      mma_f32<false, true>(R2 + rows * ldr, ldr, X2g, lds, Sg, lds, kSub, rows, ms,
                                accumulate);
    __syncthreads();
  }
}

// The entry points the chunk kernels call: kTC (16-bit inputs) takes the
// register form, fp32 inputs the shared-memory form above. scratch is unused by
// the register form and may then be null.
template <bool kTC>
__device__ __forceinline__ void gated_scores(float* out, int ldo, const float* X, int ldx,
                                             const float* A, int lda, const float* G,
                                             const float* S, int lde, int L, int ms, float mult,
                                             float* scratch) {
  if constexpr (kTC) gated_scores_regs(out, ldo, X, ldx, A, lda, G, S, lde, L, ms, mult);
  else gated_scores_smem(out, ldo, X, ldx, A, lda, G, S, lde, L, ms, mult, scratch);
}

template <bool kTC>
__device__ __forceinline__ void gated_rev_sums(float* out, int ldo, const float* A,
                                               const float* X, const float* B, const float* Y,
                                               int lda, const float* G, int lde, int L, int ms,
                                               float* scratch) {
  if constexpr (kTC) gated_rev_sums_regs(out, ldo, A, X, B, Y, lda, G, lde, L, ms);
  else gated_rev_sums_smem(out, ldo, A, X, B, Y, lda, G, lde, L, ms, scratch);
}

template <bool kTC>
__device__ __forceinline__ void gated_pairs(float* R1, const float* X1, float* R2,
                                            const float* X2, int ldr, const float* G,
                                            const float* S, int lde, int L, int ms,
                                            bool accumulate, float* scratch) {
  if constexpr (kTC) gated_pairs_regs(R1, X1, R2, X2, ldr, G, S, lde, ms, accumulate);
  else gated_pairs_smem(R1, X1, R2, X2, ldr, G, S, lde, L, ms, accumulate, scratch);
}

}  // namespace ravensp::kernels::gsa_cuda
