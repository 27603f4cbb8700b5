// The K-loops of the chunk kernels as a two-stage cp.async pipeline.
//
// A step multiplies token tiles (q, k, dO, v) with one tile of a per-chunk
// state; all of them are in the input dtype (the states are stored in it, see
// Plan), so every operand is copied as it is, by cp.async, into one of two
// buffer sets. Loading a tile synchronously put one exposed memory round trip in
// every step; here the copies of step s + 1 are in flight while step s
// multiplies. (When the states were fp32, the tile was staged and narrowed
// shared-to-shared, one more barrier and pass per step.)
#pragma once

#include "kernels/gsa/gsa_common.cuh"

namespace ravensp::kernels::gsa_cuda {

// Runs n steps. issue(s, b) starts the copies of step s into buffer set b (0 or
// 1), each by one async_tile; body(s, b) multiplies step s with set b. Anything
// else issued by async_tile before the call is waited for by step 0. Every
// thread must call it; it ends with a barrier.
template <typename Issue, typename Body>
__device__ __forceinline__ void pipelined_steps(int n, Issue issue, Body body) {
  issue(0, 0);
  for (int s = 0; s < n; ++s) {
    async_wait();  // step s's copies have landed; every warp is done with step s - 1
    if (s + 1 < n) issue(s + 1, (s + 1) & 1);
    body(s, s & 1);
  }
  __syncthreads();  // the last set is free
}

}  // namespace ravensp::kernels::gsa_cuda
