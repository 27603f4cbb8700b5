// Element-wise host reductions (sum, max) over every comm DType, fp16 and bf16
// included (computed in fp32, rounded to nearest even): the TCP backend's local
// combine and the MPI backend's user-defined ops for the 16-bit float types.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ravensp/comm.h"

namespace ravensp::comm {

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16(float f);

// inout[i] = op(inout[i], in[i]) for i < count.
void host_reduce(void* inout, const void* in, size_t count, DType dt, ReduceOp op);

}  // namespace ravensp::comm
