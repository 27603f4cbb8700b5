// The C++ entry points of include/ravensp/ops.h: typed dispatcher calls.
#include <ATen/core/dispatch/Dispatcher.h>

#include "ravensp/ops.h"

namespace ravensp::ops {
namespace {

using Tensor = at::Tensor;
using T3 = std::tuple<Tensor, Tensor, Tensor>;
using T6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
using T7 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

template <typename Sig>
c10::TypedOperatorHandle<Sig> find(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

}  // namespace

T3 gsa_chunk(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
             double scale, const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
             int64_t chunk_size) {
  static auto op = find<T3(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, double, const OptTensor&, const OptTensor&,
                           const OptTensor&, int64_t)>("ravensp::gsa_chunk");
  return op.call(q, k, v, s, g, scale, hk0, hv0, cu, chunk_size);
}

T3 gsa_recurrent(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                 const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                 const OptTensor& cu) {
  static auto op = find<T3(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, double, const OptTensor&, const OptTensor&,
                           const OptTensor&)>("ravensp::gsa_recurrent");
  return op.call(q, k, v, s, g, scale, hk0, hv0, cu);
}

T6 gsa_chunk_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                 const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                 const OptTensor& cu, int64_t chunk_size, bool save_states) {
  static auto op = find<T6(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, double, const OptTensor&, const OptTensor&,
                           const OptTensor&, int64_t, bool)>("ravensp::gsa_chunk_fwd");
  return op.call(q, k, v, s, g, scale, hk0, hv0, cu, chunk_size, save_states);
}

T7 gsa_chunk_bwd(const Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
                 const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                 const Tensor& g, const Tensor& p, const OptTensor& lse, double scale,
                 const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
                 int64_t chunk_size, const OptTensor& states) {
  static auto op =
      find<T7(const Tensor&, const OptTensor&, const OptTensor&, const Tensor&, const Tensor&,
              const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&, double,
              const OptTensor&, const OptTensor&, const OptTensor&, int64_t,
              const OptTensor&)>("ravensp::gsa_chunk_bwd");
  return op.call(grad_o, grad_hkT, grad_hvT, q, k, v, s, g, p, lse, scale, hk0, hv0, cu,
                 chunk_size, states);
}

T3 gsa_recurrent_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                     const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                     const OptTensor& cu) {
  static auto op = find<T3(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, double, const OptTensor&, const OptTensor&,
                           const OptTensor&)>("ravensp::gsa_recurrent_fwd");
  return op.call(q, k, v, s, g, scale, hk0, hv0, cu);
}

T7 gsa_recurrent_bwd(const Tensor& grad_o, const OptTensor& grad_hkT, const OptTensor& grad_hvT,
                     const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                     const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                     const OptTensor& cu) {
  static auto op = find<T7(const Tensor&, const OptTensor&, const OptTensor&, const Tensor&,
                           const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                           const OptTensor&, const OptTensor&, const OptTensor&)>(
      "ravensp::gsa_recurrent_bwd");
  return op.call(grad_o, grad_hkT, grad_hvT, q, k, v, s, g, scale, hk0, hv0, cu);
}

}  // namespace ravensp::ops

namespace ravensp::ops {
const char* op_library_tag() { return "ravensp_ops"; }
}  // namespace ravensp::ops
