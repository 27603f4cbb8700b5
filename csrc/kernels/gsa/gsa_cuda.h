// CUDA entry points of the GSA kernels (torch-free): params + workspace + stream.
// The caller allocates the workspace (bytes from *_workspace_bytes) on the
// tensors' device; the kernels keep per-chunk fp32 states and gradients there.
// Supported shapes: gsa_cuda_table.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/gsa/gsa_cuda_table.h"
#include "kernels/gsa/params.h"

namespace ravensp::kernels {

size_t gsa_chunk_fwd_workspace_bytes(const GsaFwdParams& params);
void gsa_chunk_fwd_cuda(const GsaFwdParams& params, void* workspace, cudaStream_t stream);

// p may be nullptr: the backward then recomputes it from the forward states.
size_t gsa_chunk_bwd_workspace_bytes(const GsaBwdParams& params);
void gsa_chunk_bwd_cuda(const GsaBwdParams& params, void* workspace, cudaStream_t stream);

// Token-by-token forward for decoding (short T, state in and out): one kernel
// per pass that keeps its state columns in registers.
size_t gsa_recurrent_fwd_workspace_bytes(const GsaFwdParams& params);
void gsa_recurrent_fwd_cuda(const GsaFwdParams& params, void* workspace, cudaStream_t stream);

}  // namespace ravensp::kernels
