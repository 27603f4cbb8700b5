// Intra-chunk gated products of GSA, elementwise in fp32 on shared memory.
// The decay between tokens i <= t of slot m is exp(G_t - G_i) <= 1; it is
// carried as a running product of exp(g) along the token loop (never as
// exp(G_t) * exp(-G_i), which overflows), or taken directly for the
// slot-reduced pair products.
#pragma once

#include "kernels/gsa/gsa_common.cuh"

namespace ravensp::kernels::gsa_cuda {

// Forward-in-time scores for one slot slice [0, ms):
//   out[t][m] = mult * (exp(G_tm) * X[t][m] + sum_{i<=t} A[t][i] S[i][m] exp(G_tm - G_im))
// for t < L (X and out may alias). A is [64][lda] fp32; G, E (= exp g), S are
// fp32 [64][lde]. Ends with a barrier.
__device__ __forceinline__ void gated_scores(float* out, int ldo, const float* X, int ldx,
                                             const float* A, int lda, const float* G,
                                             const float* E, const float* S, int lde, int L,
                                             int ms, float mult) {
  for (int idx = threadIdx.x; idx < L * ms; idx += blockDim.x) {
    const int t = idx / ms, m = idx - t * ms;
    float acc = 0.f, fac = 1.f;
    const float* arow = A + t * lda;
    for (int i = t; i >= 0; --i) {
      acc = fmaf(arow[i] * S[i * lde + m], fac, acc);
      fac *= E[i * lde + m];
    }
    out[t * ldo + m] = mult * fmaf(__expf(G[t * lde + m]), X[t * ldx + m], acc);
  }
  __syncthreads();
}

// Backward-in-time sums for one slot slice:
//   out[i][m] = sum_{t>=i, t<L} (A[t][i] X[t][m] + B[t][i] Y[t][m]) exp(G_tm - G_im)
// (B, Y may be null). No barrier at the end.
__device__ __forceinline__ void gated_rev_sums(float* out, int ldo, const float* A,
                                               const float* X, const float* B, const float* Y,
                                               int lda, const float* E, int lde, int L, int ms) {
  for (int idx = threadIdx.x; idx < L * ms; idx += blockDim.x) {
    const int i = idx / ms, m = idx - i * ms;
    float acc = 0.f, fac = 1.f;
    for (int t = i; t < L; ++t) {
      if (t > i) fac *= E[t * lde + m];
      float a = A[t * lda + i] * X[t * lde + m];
      if (B != nullptr) a = fmaf(B[t * lda + i], Y[t * lde + m], a);
      acc = fmaf(a, fac, acc);
    }
    out[i * ldo + m] = acc;
  }
}

// Slot-reduced pair products for the lower triangle i <= t, accumulated over
// slot slices (accumulate = false for the first slice):
//   R1[t][i] += sum_m X1[t][m] S[i][m] exp(G_tm - G_im), likewise R2 with X2
// (X2/R2 may be null). Entries i > t and rows t >= L are set to 0. No barrier.
__device__ __forceinline__ void gated_pairs(float* R1, const float* X1, float* R2,
                                            const float* X2, int ldr, const float* G,
                                            const float* S, int lde, int L, int ms,
                                            bool accumulate) {
  for (int idx = threadIdx.x; idx < kChunk * kChunk; idx += blockDim.x) {
    const int t = idx / kChunk, i = idx - t * kChunk;
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
}

}  // namespace ravensp::kernels::gsa_cuda
