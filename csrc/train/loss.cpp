// Chunked cross-entropy (see loss.h). Each chunk is a recompute node: forward
// keeps only its input rows, backward rebuilds that chunk's logits alone.
#include "train/loss.h"

#include <memory>

#include "model/layers.h"
#include "train/data.h"

namespace ravensp::train {

LossParts chunked_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight,
                                const at::Tensor& targets, int64_t chunk) {
  RAVENSP_CHECK(hidden.dim() == 2 && targets.dim() == 1 && hidden.size(0) == targets.size(0),
                "chunked_cross_entropy: hidden [N, D] and targets [N] expected, got ",
                shape_str(hidden.sizes()), " and ", shape_str(targets.sizes()));
  auto idx = targets.ne(kIgnoreIndex).nonzero().squeeze(1);
  LossParts out;
  out.scored = idx.numel();
  auto h = hidden.index_select(0, idx);
  auto t = targets.index_select(0, idx);
  const auto acc_dtype = model::compute_dtype(hidden.scalar_type());
  // A shard with no scored token (MQAR scores only the sequence's end) must still
  // run the model's backward: the SP ops' backward is collective over the group.
  out.loss_sum = out.scored == 0 ? (hidden.sum() * 0).to(acc_dtype)
                                 : at::zeros({}, hidden.options().dtype(acc_dtype));
  auto correct = std::make_shared<int64_t>(0);
  for (int64_t start = 0; start < out.scored; start += chunk) {
    const int64_t n = std::min(chunk, out.scored - start);
    auto tc = t.narrow(0, start, n);
    auto fn = [weight, tc, acc_dtype, correct](const at::Tensor& hc) {
      auto logits = at::linear(hc, weight).to(acc_dtype);
      // Counted once: the forward runs without grad (recompute node or eval), the
      // backward's rerun with grad.
      if (!torch::GradMode::is_enabled()) *correct += logits.argmax(-1).eq(tc).sum().item<int64_t>();
      return at::cross_entropy_loss(logits, tc, {}, at::Reduction::Sum);
    };
    out.loss_sum = out.loss_sum + model::checkpointed(fn, h.narrow(0, start, n));
  }
  out.correct = *correct;
  return out;
}

}  // namespace ravensp::train
