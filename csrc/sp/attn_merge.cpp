// The LSE merge rule: lse = log(e^a + e^b), o = o_a e^(a - lse) + o_b e^(b - lse),
// computed around the larger LSE so it neither overflows nor meets inf - inf.
#include "attn_merge.h"

#include <limits>

namespace ravensp::sp::ring {

void merge_partial(at::Tensor acc_o, at::Tensor acc_lse, const at::Tensor& o,
                   const at::Tensor& lse) {
  const auto dt = acc_lse.scalar_type();
  at::Tensor b = lse.to(dt);
  at::Tensor m = at::maximum(acc_lse, b);
  // Rows where both sides are empty keep m = -inf; shift them by 0 instead so the
  // exponentials below are exp(-inf) = 0 rather than exp(nan).
  at::Tensor shift = at::where(at::isinf(m), at::zeros_like(m), m);
  at::Tensor wa = at::exp(acc_lse - shift), wb = at::exp(b - shift);
  at::Tensor sum = wa + wb;
  at::Tensor new_lse = shift + at::log(sum);  // log(0) = -inf for empty rows
  at::Tensor inv = at::where(sum > 0, sum.reciprocal(), at::zeros_like(sum));
  // [B, H, n] weights -> [B, n, H, 1] to scale the [B, n, H, D] outputs.
  at::Tensor ca = (wa * inv).transpose(1, 2).unsqueeze(-1);
  at::Tensor cb = (wb * inv).transpose(1, 2).unsqueeze(-1);
  acc_o.mul_(ca).add_(o.to(dt) * cb);
  acc_lse.copy_(new_lse);
}

}  // namespace ravensp::sp::ring
