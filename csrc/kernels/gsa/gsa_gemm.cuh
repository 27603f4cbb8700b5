// Block-level matrix product for the GSA chunk kernels: C (fp32) = / += A @ B
// with A, B in shared memory. 16-bit operands run on the tensor cores (WMMA,
// fp32 accumulation); fp32 operands run on the FMA units in full precision (the
// fp32 path serves tests and exactness checks, not speed).
#pragma once

#include <mma.h>

#include <type_traits>

#include "kernels/gsa/gsa_common.cuh"

namespace ravensp::kernels::gsa_cuda {

// Logical A is [m x k], B is [k x n]. kTA: A is stored as [k][m] (A(i, kk) =
// A[kk * lda + i]); kTB: B is stored as [n][k]. C is row-major [m][n] with ldc,
// in shared or global memory. m, n, k are multiples of 16; every warp of the
// block must call this (it ends with no barrier: callers sync before reuse).
template <typename T, bool kTA, bool kTB>
struct BlockMma {
  static __device__ __forceinline__ void run(float* C, int ldc, const T* A, int lda, const T* B,
                                             int ldb, int m, int n, int k, bool accumulate) {
    using namespace nvcuda;
    using LA = typename std::conditional<kTA, wmma::col_major, wmma::row_major>::type;
    using LB = typename std::conditional<kTB, wmma::col_major, wmma::row_major>::type;
    const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int tn = n >> 4;
    // Each warp owns a 16 x 32 strip when n allows it, reusing the A fragment.
    const int pairs = (tn + 1) >> 1;
    for (int w = warp; w < (m >> 4) * pairs; w += nwarps) {
      const int i = w / pairs, j0 = (w - i * pairs) * 2;
      const bool two = j0 + 1 < tn;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> c0, c1;
      float* cp0 = C + static_cast<int64_t>(i) * 16 * ldc + j0 * 16;
      float* cp1 = cp0 + 16;
      if (accumulate) {
        wmma::load_matrix_sync(c0, cp0, ldc, wmma::mem_row_major);
        if (two) wmma::load_matrix_sync(c1, cp1, ldc, wmma::mem_row_major);
      } else {
        wmma::fill_fragment(c0, 0.f);
        wmma::fill_fragment(c1, 0.f);
      }
      for (int kk = 0; kk < k; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> b0, b1;
        wmma::load_matrix_sync(a, kTA ? A + kk * lda + i * 16 : A + i * 16 * lda + kk, lda);
        wmma::load_matrix_sync(b0, kTB ? B + j0 * 16 * ldb + kk : B + kk * ldb + j0 * 16, ldb);
        wmma::mma_sync(c0, a, b0, c0);
        if (two) {
          wmma::load_matrix_sync(b1, kTB ? B + (j0 + 1) * 16 * ldb + kk
                                         : B + kk * ldb + (j0 + 1) * 16, ldb);
          wmma::mma_sync(c1, a, b1, c1);
        }
      }
      wmma::store_matrix_sync(cp0, c0, ldc, wmma::mem_row_major);
      if (two) wmma::store_matrix_sync(cp1, c1, ldc, wmma::mem_row_major);
    }
  }
};

template <bool kTA, bool kTB>
struct BlockMma<float, kTA, kTB> {
  static __device__ __forceinline__ void run(float* C, int ldc, const float* A, int lda,
                                             const float* B, int ldb, int m, int n, int k,
                                             bool accumulate) {
    for (int idx = threadIdx.x; idx < m * n; idx += blockDim.x) {
      const int i = idx / n, j = idx - i * n;
      float acc = accumulate ? C[static_cast<int64_t>(i) * ldc + j] : 0.f;
      for (int kk = 0; kk < k; ++kk) {
        const float a = kTA ? A[kk * lda + i] : A[i * lda + kk];
        const float b = kTB ? B[j * ldb + kk] : B[kk * ldb + j];
        acc = fmaf(a, b, acc);
      }
      C[static_cast<int64_t>(i) * ldc + j] = acc;
    }
  }
};

template <bool kTA, bool kTB, typename T>
__device__ __forceinline__ void block_mma(float* C, int ldc, const T* A, int lda, const T* B,
                                          int ldb, int m, int n, int k, bool accumulate) {
  BlockMma<T, kTA, kTB>::run(C, ldc, A, lda, B, ldb, m, n, k, accumulate);
}

}  // namespace ravensp::kernels::gsa_cuda
