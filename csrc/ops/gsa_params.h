// Tensors -> kernel params for the GSA passes, shared by the CPU and CUDA
// dispatch: the backends differ in what they compute in (the CPU reference in
// the accumulation dtype, CUDA in the input dtype), not in how params are filled.
#pragma once

#include <ATen/ATen.h>

#include "kernels/gsa/params.h"
#include "ops/gsa_args.h"

namespace ravensp::ops {

// The inputs as the kernel reads them (contiguous, in the compute dtype) and the
// initial states (accumulation dtype, or undefined).
struct GsaInputs {
  at::Tensor q, k, v, s, g, hk0, hv0;
};

struct GsaFwdOutputs {
  at::Tensor o, hkT, hvT, p, lse;  // p and lse are empty ({0}) when the pass does not save them
  at::Tensor states;               // uint8, empty ({0}) unless the CUDA forward keeps its states
};

struct GsaBwdOutputs {
  at::Tensor dq, dk, dv, ds, dg, dhk0, dhv0;
};

// o in the inputs' dtype; the final states, p and lse in `accum`; `states_bytes`
// sizes the kept chunk states (uint8; 0: none).
GsaFwdOutputs alloc_fwd_outputs(const GsaArgs& a, const GsaInputs& in, at::ScalarType accum,
                                bool with_p, int64_t states_bytes = 0);
GsaBwdOutputs alloc_bwd_outputs(const GsaArgs& a, const GsaInputs& in, at::ScalarType accum);

kernels::GsaFwdParams fwd_params(const kernels::GsaShape& shape, const GsaInputs& in,
                                 const GsaFwdOutputs& out, at::ScalarType accum, double scale,
                                 int64_t chunk_size);
// d_o: grad of o in the compute dtype; p, lse, states (any may be undefined),
// dhkT, dhvT in accum.
kernels::GsaBwdParams bwd_params(const kernels::GsaShape& shape, const GsaInputs& in,
                                 const at::Tensor& p, const at::Tensor& lse,
                                 const at::Tensor& states, const at::Tensor& d_o,
                                 const at::Tensor& dhkT, const at::Tensor& dhvT,
                                 const GsaBwdOutputs& out, at::ScalarType accum, double scale,
                                 int64_t chunk_size);

// The backward's extra arguments checked against the forward's shapes.
void check_bwd_args(const char* fn, const GsaArgs& a, const at::Tensor& grad_o,
                    const at::Tensor* p, const std::optional<at::Tensor>& lse,
                    const std::optional<at::Tensor>& grad_hkT,
                    const std::optional<at::Tensor>& grad_hvT, const at::Tensor& q,
                    const at::Tensor& v, const at::Tensor& s);

}  // namespace ravensp::ops
