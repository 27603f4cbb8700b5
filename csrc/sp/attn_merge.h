// Online-softmax merge of partial attention outputs by their log-sum-exp: the
// running output and LSE of a rank's queries stay in fp32 (fp64 for fp64 inputs)
// until the last ring step, so the ring does not drift (DESIGN.md §9).
#pragma once

#include <ATen/ATen.h>

namespace ravensp::sp::ring {

// acc_o [B, n, H, D] and acc_lse [B, H, n] (views into the running state, accumulate
// dtype) absorb a partial (o [B, n, H, D], lse [B, H, n]) in place. A LSE of -inf
// marks rows that saw no key; merging two such rows leaves (0, -inf), never NaN.
void merge_partial(at::Tensor acc_o, at::Tensor acc_lse, const at::Tensor& o,
                   const at::Tensor& lse);

}  // namespace ravensp::sp::ring
