// The dispatch table of the CUDA GSA kernels: which K, V, M, dtypes and chunk
// size they support. Plain C++ (no CUDA headers), so the op layer checks a call
// before anything is allocated or launched.
#pragma once

#include <cstdint>

#include "kernels/gsa/params.h"

namespace ravensp::kernels {

// Throws an error naming the unsupported value and the supported set.
void gsa_cuda_check_supported(const char* fn, const GsaShape& shape, DType dtype,
                              int64_t chunk_size);

}  // namespace ravensp::kernels
