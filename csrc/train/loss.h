// Cross-entropy through the LM head, chunk by chunk, so the logits of at most
// `chunk` tokens exist at once, in forward and in backward (internal to train/).
#pragma once

#include <torch/torch.h>

namespace ravensp::train {

struct LossParts {
  at::Tensor loss_sum;  // scalar: summed CE over scored tokens (differentiable)
  int64_t correct = 0;  // argmax == target among scored tokens
  int64_t scored = 0;
};

// hidden [N, D] (final-normed states), weight [V, D] (lm_head), targets [N] with
// -100 for unscored tokens (dropped before the head: MQAR scores a few per sequence).
LossParts chunked_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight,
                                const at::Tensor& targets, int64_t chunk);

}  // namespace ravensp::train
