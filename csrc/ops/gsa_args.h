// Argument checks and kernel-params construction for the GSA ops: every shape,
// dtype, device and cu_seqlens rule lives here, once, and runs before any work.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "kernels/gsa/params.h"

namespace ravensp::ops {

// Checked view of one GSA call's inputs.
struct GsaArgs {
  kernels::GsaShape shape;
  std::vector<int64_t> cu_host;    // offsets on the host (empty when not packed)
  at::Tensor cu_dev;               // int64 offsets on the inputs' device (undefined if not packed)
  at::ScalarType accum = at::kFloat;  // Float or Double
  int64_t num_seqs() const { return shape.num_seqs; }
};

// fn names the calling op in messages. States are optional; when given they
// must be [N, H, K, M] / [N, H, M, V] with N the number of sequences.
// cu_seqlens_host: the same offsets already on the host (the SP op plans them
// there), so a CUDA cu_seqlens is not copied back, a wait for the device.
GsaArgs check_gsa_args(const char* fn, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& s, const at::Tensor& g,
                       const std::optional<at::Tensor>& hk0, const std::optional<at::Tensor>& hv0,
                       const std::optional<at::Tensor>& cu_seqlens,
                       const std::vector<int64_t>* cu_seqlens_host = nullptr);

// Checks a gradient or saved tensor against the expected shape.
void check_like(const char* fn, const char* name, const at::Tensor& t, at::IntArrayRef shape,
                const at::Tensor& ref);

kernels::DType to_kernel_dtype(at::ScalarType st);

// Sizes of the two states for a checked call.
std::vector<int64_t> hk_shape(const GsaArgs& a);
std::vector<int64_t> hv_shape(const GsaArgs& a);

// States in the accumulation dtype, contiguous (or undefined when absent).
at::Tensor state_or_undef(const std::optional<at::Tensor>& t, at::ScalarType accum);

}  // namespace ravensp::ops
