// The local kernel of ring attention: one tile of this rank's queries against a
// block of keys, forward (partial output + LSE) and backward (recomputed from the
// final output and LSE). Fused ATen kernels (cuDNN, flash) on CUDA for unmasked and
// causal-diagonal tiles; an explicit fp32/fp64 math path everywhere else.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "ring_plan.h"

namespace ravensp::sp::ring {

// The backends a tile can run on. RAVENSP_RING_KERNEL (docs/ring_attention.md)
// picks the fused one on CUDA: "cudnn" (default), "flash", or "math" to force the
// explicit path; CPU, fp32/fp64 and masked tiles always use math.
enum class Kernel { kMath, kFlash, kCudnn };
inline constexpr const char* kKernelEnv = "RAVENSP_RING_KERNEL";
Kernel tile_kernel(const Config& c, const Tile& t, const at::Tensor& q);
const char* kernel_name(Kernel k);

// q [B, nq, H, D], k/v [B, nk, Hkv, D] -> (o [B, nq, H, D], lse [B, H, nq]), both in
// c.acc_dtype; rows that see no key get (0, -inf).
std::tuple<at::Tensor, at::Tensor> tile_forward(const Config& c, const Tile& t,
                                                const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v);

// grad_o and o: [B, nq, H, D] rows of the final output (input dtype); lse, delta:
// [B, H, nq] final LSE and rowsum(grad_o * o) in c.acc_dtype. Returns (dq, dk, dv)
// in c.acc_dtype with dk/dv already summed over each KV head's query group.
std::tuple<at::Tensor, at::Tensor, at::Tensor> tile_backward(
    const Config& c, const Tile& t, const at::Tensor& grad_o, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& o, const at::Tensor& lse,
    const at::Tensor& delta);

}  // namespace ravensp::sp::ring
