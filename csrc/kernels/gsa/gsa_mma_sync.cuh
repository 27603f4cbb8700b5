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

// Two fp32 values as one register of two 16-bit T (a in the low half: the lower
// address, as mma.sync's C layout has (g, 2t) before (g, 2t + 1)).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    static_assert(std::is_same<T, __half>::value, "pack2: bf16 or fp16");
    const __half2 v = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// Bytes of the per-warp staging area store_acc_rows needs for NT n8 tiles.
template <typename T, int NT>
constexpr int kAccStageBytes = 16 * 8 * NT * static_cast<int>(sizeof(T));

// Writes one warp's 16 x (8 NT) accumulator piece (mma.sync C layout) to global
// rows of T (row r at out + r * ld; out and ld keep every row 16-byte aligned),
// through `stage`, the warp's own kAccStageBytes of shared memory: stmatrix puts
// the piece there, then each lane stores 16 contiguous bytes, so a row's 16 NT
// bytes go out as whole 32-byte sectors. Stored straight from the fragments, each
// 4-byte store covered 16 bytes of 8 rows: twice the L2 write transactions, and
// the state walk is L2-bound (Nsight Compute: 83% L2 throughput at M = 256).
template <typename T, int NT>
__device__ __forceinline__ void store_acc_rows(T* out, int64_t ld, const float (&acc)[NT][4],
                                               T* stage) {
  static_assert(NT == 1 || NT == 2, "one or two n8 tiles per warp");
  static_assert(sizeof(T) == 2, "stmatrix stores 16-bit elements");
  constexpr int kW = 8 * NT;  // staging row width
  const int lane = threadIdx.x & 31, i = lane >> 3;
  // Matrix i: n8 tile i / 2, rows 8 (i % 2) to + 8; lane l gives row l % 8's address.
  const unsigned addr = smem_addr(stage + ((i & 1) * 8 + (lane & 7)) * kW + (i >> 1) * 8);
  if constexpr (NT == 2) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
                 "r"(pack2<T>(acc[0][0], acc[0][1])), "r"(pack2<T>(acc[0][2], acc[0][3])),
                 "r"(pack2<T>(acc[1][0], acc[1][1])), "r"(pack2<T>(acc[1][2], acc[1][3]))
                 : "memory");
  } else {
    asm volatile("stmatrix.sync.aligned.m8n8.x2.shared.b16 [%0], {%1, %2};\n" ::"r"(addr),
                 "r"(pack2<T>(acc[0][0], acc[0][1])), "r"(pack2<T>(acc[0][2], acc[0][3]))
                 : "memory");
  }
  __syncwarp();
  constexpr int kPieces = kW / 8;  // 16-byte pieces per row
  if (lane < 16 * kPieces) {
    const int r = lane / kPieces, c = (lane % kPieces) * 8;
    *reinterpret_cast<uint4*>(out + r * ld + c) =
        *reinterpret_cast<const uint4*>(stage + r * kW + c);
  }
  __syncwarp();  // the stage is read before the warp writes it again
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
// them to global memory in T through its own kAccStageBytes<T, 2> of `stage`
// (store_acc_rows; row r at out + r * ld, every row 16-byte aligned). No fp32
// staging and no block barrier: a block needs one only before it overwrites SA
// or SB. SA and SB as warp_mma_tokens takes them.
template <typename T>
__device__ __forceinline__ void tokens_product_to_global(T* out, int64_t ld, const T* SA, int lda,
                                                         const T* SB, int ldb, int rows,
                                                         int cols, T* stage) {
  const int tc = cols / 16, warp = threadIdx.x >> 5;
  T* my_stage = stage + warp * (kAccStageBytes<T, 2> / sizeof(T));
  for (int tile = warp; tile < (rows / 16) * tc; tile += blockDim.x >> 5) {
    const int r0 = (tile / tc) * 16, n0 = (tile - (tile / tc) * tc) * 16;
    float acc[2][4] = {};
    warp_mma_tokens<T, 2>(acc, SA, lda, SB, ldb, r0, n0);
    store_acc_rows<T, 2>(out + r0 * ld + n0, ld, acc, my_stage);
  }
}

}  // namespace ravensp::kernels::gsa_cuda
