// The K-loops of the chunk kernels as a two-stage cp.async pipeline.
//
// A step multiplies token tiles (q, k, dO, v: 16-bit, copied as they are) with
// one tile of an fp32 chunk state, which the tensor cores take in the input
// dtype. Loading that tile synchronously (load, convert, store) put one exposed
// memory round trip in every step, and Nsight Compute's stall samples sat on
// those conversions. Here the step's state tile arrives by cp.async in an fp32
// staging buffer and is narrowed shared-to-shared, and the copies of step s + 1
// (token tiles into the other of two buffers, the next state tile into the
// staging buffer the narrowing just freed) are in flight while step s multiplies.
#pragma once

#include "kernels/gsa/gsa_common.cuh"

namespace ravensp::kernels::gsa_cuda {

// dst[r][c] = src[r][c] converted, for a rows x cols tile in shared memory
// (narrowing an fp32 state tile to the input dtype, or widening a copied
// 16-bit tile to fp32). No barrier.
template <typename Tdst, typename Tsrc>
__device__ __forceinline__ void convert_tile(Tdst* dst, int ldd, const Tsrc* src, int lds,
                                             int rows, int cols) {
  for (int idx = threadIdx.x; idx < rows * cols; idx += blockDim.x) {
    const int r = idx / cols, c = idx - r * cols;
    dst[r * ldd + c] = from_f<Tdst>(to_f<Tsrc>(src[r * lds + c]));
  }
}

// Runs n steps. issue(s, b) starts the copies of step s: its token tiles into
// buffer set b (0 or 1) and its fp32 state tile into a staging buffer, each by
// one async_tile. narrow(s) converts the staged tile of step s into the tile
// the products read; body(s, b) multiplies step s with the token tiles of set b
// and that tile. Anything else issued by async_tile before the call is waited
// for by step 0. Every thread must call it; it ends with a barrier.
template <typename Issue, typename Narrow, typename Body>
__device__ __forceinline__ void staged_steps(int n, Issue issue, Narrow narrow, Body body) {
  issue(0, 0);
  for (int s = 0; s < n; ++s) {
    async_wait();
    narrow(s);
    __syncthreads();  // the tile is complete; the staging buffer and the other token set are free
    if (s + 1 < n) issue(s + 1, (s + 1) & 1);
    body(s, s & 1);
    __syncthreads();  // the tile and this set are free for step s + 1's narrowing and s + 2's copies
  }
}

// staged_steps with one state-tile shape: zrows x zcols fp32 staged in `stage`
// (leading dim ldst), narrowed into Z (leading dim ldz).
template <typename T, typename Issue, typename Body>
__device__ __forceinline__ void state_pipeline(int n, float* stage, int ldst, T* Z, int ldz,
                                               int zrows, int zcols, Issue issue, Body body) {
  staged_steps(
      n, issue, [&](int) { convert_tile(Z, ldz, stage, ldst, zrows, zcols); }, body);
}

}  // namespace ravensp::kernels::gsa_cuda
