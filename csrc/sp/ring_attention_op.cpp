// torch.ops.ravensp.ring_attention: schemas (a fragment of the ravensp library),
// the CPU/CUDA implementations of the forward and backward passes, the C++
// autograd kernel of the differentiable op, and the C++ API of ring_attention.h.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ravensp/ring_attention.h"
#include "ring_args.h"
#include "ring_loop.h"

namespace ravensp::sp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Tensor = at::Tensor;
using OptTensor = std::optional<at::Tensor>;
using T2 = std::tuple<Tensor, Tensor>;
using T3 = std::tuple<Tensor, Tensor, Tensor>;

T2 fwd_impl(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
            int64_t window, const OptTensor& cu, int64_t group, int64_t layout) {
  const ring::Config c =
      ring::make_config("ring_attention", q, k, v, scale, causal, window, cu, group, layout);
  return ring::ring_forward(c, q.contiguous(), k.contiguous(), v.contiguous());
}

T3 bwd_impl(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
            const Tensor& o, const Tensor& lse, double scale, bool causal, int64_t window,
            const OptTensor& cu, int64_t group, int64_t layout) {
  const ring::Config c = ring::make_config("ring_attention backward", q, k, v, scale, causal,
                                           window, cu, group, layout, &grad_o, &o, &lse);
  return ring::ring_backward(c, grad_o.contiguous(), q.contiguous(), k.contiguous(),
                             v.contiguous(), o.contiguous(), lse.contiguous());
}

Tensor plain_impl(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                  int64_t window, const OptTensor& cu, int64_t group, int64_t layout) {
  return std::get<0>(fwd_impl(q, k, v, scale, causal, window, cu, group, layout));
}

class RingAttentionFunction : public torch::autograd::Function<RingAttentionFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k,
                               const Tensor& v, double scale, bool causal, int64_t window,
                               const OptTensor& cu, int64_t group, int64_t layout) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [o, lse] = ring_attention_fwd(q, k, v, scale, causal, window, cu, group,
                                       layout_from_int(layout));
    // The LSE is all the backward keeps beyond the inputs: blocks are re-read and
    // the tiles recomputed, as flash attention does.
    ctx->save_for_backward({q, k, v, o, lse, cu.value_or(Tensor())});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["window"] = window;
    ctx->saved_data["group"] = group;
    ctx->saved_data["layout"] = layout;
    return {o};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor grad_o = grads[0].defined() ? grads[0] : at::zeros_like(s[3]);
    OptTensor cu = s[5].defined() ? OptTensor(s[5]) : std::nullopt;
    auto [dq, dk, dv] = ring_attention_bwd(
        grad_o, s[0], s[1], s[2], s[3], s[4], ctx->saved_data["scale"].toDouble(),
        ctx->saved_data["causal"].toBool(), ctx->saved_data["window"].toInt(), cu,
        ctx->saved_data["group"].toInt(), layout_from_int(ctx->saved_data["layout"].toInt()));
    return {dq, dk, dv, Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor autograd_impl(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                     int64_t window, const OptTensor& cu, int64_t group, int64_t layout) {
  return RingAttentionFunction::apply(q, k, v, scale, causal, window, cu, group, layout)[0];
}

template <typename Sig>
c10::TypedOperatorHandle<Sig> find(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

}  // namespace

Tensor ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                      bool causal, int64_t window, const OptTensor& cu, int64_t group,
                      Layout layout) {
  static auto op = find<Tensor(const Tensor&, const Tensor&, const Tensor&, double, bool, int64_t,
                               const OptTensor&, int64_t, int64_t)>("ravensp::ring_attention");
  return op.call(q, k, v, scale, causal, window, cu, group, static_cast<int64_t>(layout));
}

T2 ring_attention_fwd(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                      bool causal, int64_t window, const OptTensor& cu, int64_t group,
                      Layout layout) {
  static auto op = find<T2(const Tensor&, const Tensor&, const Tensor&, double, bool, int64_t,
                           const OptTensor&, int64_t, int64_t)>("ravensp::ring_attention_fwd");
  return op.call(q, k, v, scale, causal, window, cu, group, static_cast<int64_t>(layout));
}

T3 ring_attention_bwd(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
                      const Tensor& o, const Tensor& lse, double scale, bool causal,
                      int64_t window, const OptTensor& cu, int64_t group, Layout layout) {
  static auto op =
      find<T3(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
              const Tensor&, double, bool, int64_t, const OptTensor&, int64_t, int64_t)>(
          "ravensp::ring_attention_bwd");
  return op.call(grad_o, q, k, v, o, lse, scale, causal, window, cu, group,
                 static_cast<int64_t>(layout));
}

TORCH_LIBRARY_FRAGMENT(ravensp, m) {
  // group: an SP group handle (ravensp::sp::register_group), 0 for none;
  // layout: 0 contiguous, 1 zigzag; window <= 0: no sliding window.
  m.def("ring_attention(Tensor q, Tensor k, Tensor v, float scale, bool causal=True, "
        "int window=0, Tensor? cu_seqlens=None, int group=0, int layout=0) -> Tensor");
  m.def("ring_attention_fwd(Tensor q, Tensor k, Tensor v, float scale, bool causal, int window, "
        "Tensor? cu_seqlens, int group, int layout) -> (Tensor o, Tensor lse)");
  m.def("ring_attention_bwd(Tensor grad_o, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, "
        "float scale, bool causal, int window, Tensor? cu_seqlens, int group, int layout) "
        "-> (Tensor dq, Tensor dk, Tensor dv)");
}

// One device-generic implementation serves CPU (MPI groups) and CUDA (NCCL groups).
TORCH_LIBRARY_IMPL(ravensp, CPU, m) {
  m.impl("ring_attention_fwd", &fwd_impl);
  m.impl("ring_attention_bwd", &bwd_impl);
  m.impl("ring_attention", &plain_impl);
}
TORCH_LIBRARY_IMPL(ravensp, CUDA, m) {
  m.impl("ring_attention_fwd", &fwd_impl);
  m.impl("ring_attention_bwd", &bwd_impl);
  m.impl("ring_attention", &plain_impl);
}
TORCH_LIBRARY_IMPL(ravensp, Autograd, m) { m.impl("ring_attention", &autograd_impl); }

}  // namespace ravensp::sp
