// Differentiable GSA ops (ravensp::gsa_chunk, ravensp::gsa_recurrent): C++
// autograd kernels, so the C++ launcher trains through them without Python.
// Forward calls the low-level pass below autograd and saves what the backward
// pass needs; backward calls the matching *_bwd op on the same device.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/op_boundary.h"
#include "ravensp/ops.h"

namespace ravensp::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Tensor = at::Tensor;
using OptTensor = std::optional<at::Tensor>;

OptTensor opt(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

// Casts a state gradient back to the dtype of the state the user passed.
Tensor state_grad(const Tensor& grad, const OptTensor& state) {
  if (!state.has_value() || !state->defined()) return Tensor();
  return grad.to(state->scalar_type());
}

class GsaChunkFunction : public torch::autograd::Function<GsaChunkFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& s, const Tensor& g, double scale,
                               const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
                               int64_t chunk_size, bool backward_follows) {
    at::AutoDispatchBelowADInplaceOrView guard;
    // The CUDA forward keeps its chunk states for the backward (the CPU one
    // returns none), which then skips recomputing them.
    auto [o, hkT, hvT, p, lse, states] =
        gsa_chunk_fwd(q, k, v, s, g, scale, hk0, hv0, cu, chunk_size, backward_follows);
    ctx->save_for_backward({q, k, v, s, g, p, hk0.value_or(Tensor()), hv0.value_or(Tensor()),
                            cu.value_or(Tensor()), lse, states});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->saved_data["hk0_given"] = hk0.has_value() && hk0->defined();
    ctx->saved_data["hv0_given"] = hv0.has_value() && hv0->defined();
    return {o, hkT, hvT};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &q = saved[0], &k = saved[1], &v = saved[2], &s = saved[3], &g = saved[4],
                 &p = saved[5];
    OptTensor hk0 = opt(saved[6]), hv0 = opt(saved[7]), cu = opt(saved[8]);
    Tensor grad_o = grads[0].defined() ? grads[0] : at::zeros_like(v);
    auto [dq, dk, dv, ds, dg, dhk0, dhv0] =
        gsa_chunk_bwd(grad_o, opt(grads[1]), opt(grads[2]), q, k, v, s, g, p, opt(saved[9]),
                      ctx->saved_data["scale"].toDouble(), hk0, hv0, cu,
                      ctx->saved_data["chunk_size"].toInt(), opt(saved[10]));
    return {dq, dk, dv, ds, dg, Tensor(), state_grad(dhk0, hk0), state_grad(dhv0, hv0), Tensor(),
            Tensor(), Tensor()};
  }
};

class GsaRecurrentFunction : public torch::autograd::Function<GsaRecurrentFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& s, const Tensor& g, double scale,
                               const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [o, hkT, hvT] = gsa_recurrent_fwd(q, k, v, s, g, scale, hk0, hv0, cu);
    ctx->save_for_backward(
        {q, k, v, s, g, hk0.value_or(Tensor()), hv0.value_or(Tensor()), cu.value_or(Tensor())});
    ctx->saved_data["scale"] = scale;
    return {o, hkT, hvT};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    OptTensor hk0 = opt(saved[5]), hv0 = opt(saved[6]), cu = opt(saved[7]);
    Tensor grad_o = grads[0].defined() ? grads[0] : at::zeros_like(saved[2]);
    auto [dq, dk, dv, ds, dg, dhk0, dhv0] =
        gsa_recurrent_bwd(grad_o, opt(grads[1]), opt(grads[2]), saved[0], saved[1], saved[2],
                          saved[3], saved[4], ctx->saved_data["scale"].toDouble(), hk0, hv0, cu);
    return {dq, dk, dv, ds, dg, Tensor(), state_grad(dhk0, hk0), state_grad(dhv0, hv0), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> gsa_chunk_autograd(const Tensor& q, const Tensor& k,
                                                      const Tensor& v, const Tensor& s,
                                                      const Tensor& g, double scale,
                                                      const OptTensor& hk0, const OptTensor& hv0,
                                                      const OptTensor& cu, int64_t chunk_size) {
  // Under no_grad (or with no input requiring grad) no backward follows, so the
  // forward keeps no states (apply turns grad mode off inside forward: decided here).
  const bool backward_follows =
      at::GradMode::is_enabled() &&
      (q.requires_grad() || k.requires_grad() || v.requires_grad() || s.requires_grad() ||
       g.requires_grad() || (hk0.has_value() && hk0->defined() && hk0->requires_grad()) ||
       (hv0.has_value() && hv0->defined() && hv0->requires_grad()));
  auto r = GsaChunkFunction::apply(q, k, v, s, g, scale, hk0, hv0, cu, chunk_size,
                                   backward_follows);
  return {r[0], r[1], r[2]};
}

std::tuple<Tensor, Tensor, Tensor> gsa_chunk_plain(const Tensor& q, const Tensor& k,
                                                   const Tensor& v, const Tensor& s,
                                                   const Tensor& g, double scale,
                                                   const OptTensor& hk0, const OptTensor& hv0,
                                                   const OptTensor& cu, int64_t chunk_size) {
  auto r = gsa_chunk_fwd(q, k, v, s, g, scale, hk0, hv0, cu, chunk_size);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

std::tuple<Tensor, Tensor, Tensor> gsa_recurrent_autograd(const Tensor& q, const Tensor& k,
                                                          const Tensor& v, const Tensor& s,
                                                          const Tensor& g, double scale,
                                                          const OptTensor& hk0,
                                                          const OptTensor& hv0,
                                                          const OptTensor& cu) {
  auto r = GsaRecurrentFunction::apply(q, k, v, s, g, scale, hk0, hv0, cu);
  return {r[0], r[1], r[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(ravensp, Autograd, m) {
  m.impl("gsa_chunk", RAVENSP_OP(gsa_chunk_autograd));
  m.impl("gsa_recurrent", RAVENSP_OP(gsa_recurrent_autograd));
}

// Below autograd (inference mode, or under torch.compile's tracing of the
// autograd kernel's forward) the differentiable ops are their forward passes.
TORCH_LIBRARY_IMPL(ravensp, CompositeExplicitAutograd, m) {
  m.impl("gsa_chunk", RAVENSP_OP(gsa_chunk_plain));
  m.impl("gsa_recurrent", RAVENSP_OP(gsa_recurrent_fwd));
}

}  // namespace ravensp::ops
