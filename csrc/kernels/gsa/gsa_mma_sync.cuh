// Warp-level tensor-core products with register accumulators (mma.sync
// m16n8k16, operands by ldmatrix), for kernels that keep a tile in registers
// across many products and touch its elements in place (the state walk scales
// its state by the chunk decay every step): the fragment layout is fixed by
// PTX, unlike WMMA's, so a thread knows which (row, column) each of its
// accumulator values is. 16-bit inputs, or fp32 rounded to TF32 (mma_1688);
// fp32 accumulation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/gsa/gsa_common.cuh"

namespace ravensp::kernels::gsa_cuda {

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Four (two) 8x8 16-bit matrices from shared memory, transposed: lane l gives the
// row address of row l % 8 of matrix l / 8; register j of lane l receives
// matrix j's elements (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_addr(row)));
}

// d += a b for one m16n8k16 tile. Accumulator layout (g = lane / 4, t = lane % 4):
// d[0], d[1] at (g, 2t), (g, 2t + 1); d[2], d[3] at (g + 8, 2t), (g + 8, 2t + 1).
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2]) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    static_assert(std::is_same<T, __half>::value, "mma_16816: bf16 or fp16 operands");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// fp32 rounded to TF32 (round to nearest, ties away), the operand format of
// mma_1688: the same rounding WMMA's __float_to_tf32 applies.
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

// d += a b for one m16n8k8 TF32 tile (g = lane / 4, t = lane % 4):
// a[0..3] at (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4) of A (16 x 8);
// b[0], b[1] at (t, g), (t + 4, g) of B (8 x 8); d as in mma_16816.
__device__ __forceinline__ void mma_1688(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// acc[nt] += A B over k = 64 for one warp's 16 x (8 NT) tile at rows [r0, +16),
// columns [n0, +8 NT), with A^T and B both stored token-major in shared memory:
// A(r, t) = SA[t * lda + r], B(t, n) = SB[t * ldb + n] (leading dims multiples of
// 8 elements, so every ldmatrix row is 16-byte aligned).
template <typename T, int NT>
__device__ __forceinline__ void warp_mma_tokens(float (&acc)[NT][4], const T* SA, int lda,
                                                const T* SB, int ldb, int r0, int n0) {
  static_assert(NT == 1 || NT == 2, "one or two n8 tiles per warp");
  const int lane = threadIdx.x & 31, mat = lane >> 3, i = lane & 7;
#pragma unroll
  for (int t0 = 0; t0 < 64; t0 += 16) {
    uint32_t a[4];
    // Matrices: (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
    ldmatrix_x4_trans(a, SA + (t0 + i + 8 * (mat >> 1)) * lda + r0 + 8 * (mat & 1));
    if constexpr (NT == 2) {
      uint32_t b[4];
      // Matrices: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
      ldmatrix_x4_trans(b, SB + (t0 + i + 8 * (mat & 1)) * ldb + n0 + 8 * (mat >> 1));
      const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
      mma_16816<T>(acc[0], a, b0);
      mma_16816<T>(acc[1], a, b1);
    } else {
      uint32_t b[2];
      ldmatrix_x2_trans(b, SB + (t0 + i + 8 * (mat & 1)) * ldb + n0);
      mma_16816<T>(acc[0], a, b);
    }
  }
}

// out[r][c] = sum_t SA[t][r] SB[t][c] over a chunk's 64 tokens, for a rows x cols
// output (multiples of 16): each warp keeps 16 x 16 tiles in registers and writes
// them straight to global memory in T, two elements per store (row r at out +
// r * ld, ld even). No shared staging and no barrier: a block needs one only
// before it overwrites SA or SB. SA and SB as warp_mma_tokens takes them.
template <typename T>
__device__ __forceinline__ void tokens_product_to_global(T* out, int64_t ld, const T* SA, int lda,
                                                         const T* SB, int ldb, int rows,
                                                         int cols) {
  const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3, tc = cols / 16;
  for (int tile = threadIdx.x >> 5; tile < (rows / 16) * tc; tile += blockDim.x >> 5) {
    const int r0 = (tile / tc) * 16, n0 = (tile - (tile / tc) * tc) * 16;
    float acc[2][4] = {};
    warp_mma_tokens<T, 2>(acc, SA, lda, SB, ldb, r0, n0);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const int c = n0 + nt * 8 + 2 * tq;
      store2(out + (r0 + g) * ld + c, acc[nt][0], acc[nt][1]);
      store2(out + (r0 + g + 8) * ld + c, acc[nt][2], acc[nt][3]);
    }
  }
}

}  // namespace ravensp::kernels::gsa_cuda
