// The chunked cross-entropy equals the full one (value, accuracy and gradients,
// with ignored targets and chunk sizes that do not divide the count); AdamW and
// the schedule match their closed forms.
#include <gtest/gtest.h>

#include "train/data.h"
#include "train/loss.h"
#include "train/optim.h"

namespace {

using namespace ravensp::train;

TEST(ChunkedCrossEntropy, EqualsFullCrossEntropy) {
  torch::manual_seed(0);
  const int64_t N = 53, D = 12, V = 29;
  auto h0 = torch::randn({N, D}, torch::kDouble);
  auto w0 = torch::randn({V, D}, torch::kDouble);
  auto t = torch::randint(0, V, {N}, torch::kLong);
  t.index_put_({torch::randperm(N).narrow(0, 0, 11)}, kIgnoreIndex);
  // Reference: all logits at once.
  auto h1 = h0.clone().requires_grad_(), w1 = w0.clone().requires_grad_();
  auto logits = torch::linear(h1, w1);
  auto full = at::cross_entropy_loss(logits, t, {}, at::Reduction::Sum, kIgnoreIndex);
  full.backward();
  auto valid = t.ne(kIgnoreIndex);
  const int64_t want_correct = logits.argmax(-1).eq(t).logical_and(valid).sum().item<int64_t>();
  for (int64_t chunk : {1, 7, 42, 1000}) {
    auto h2 = h0.clone().requires_grad_(), w2 = w0.clone().requires_grad_();
    auto lp = chunked_cross_entropy(h2, w2, t, chunk);
    lp.loss_sum.backward();
    EXPECT_EQ(lp.scored, N - 11);
    EXPECT_EQ(lp.correct, want_correct) << "chunk " << chunk;
    EXPECT_NEAR(lp.loss_sum.item<double>(), full.item<double>(), 1e-12) << "chunk " << chunk;
    EXPECT_LT((h2.grad() - h1.grad()).abs().max().item<double>(), 1e-12) << "chunk " << chunk;
    EXPECT_LT((w2.grad() - w1.grad()).abs().max().item<double>(), 1e-12) << "chunk " << chunk;
    EXPECT_GT(h2.grad().abs().max().item<double>(), 0.0);
  }
}

TEST(AdamW, MatchesTorchUpdateRule) {
  auto p = torch::tensor({1.0, -2.0}, torch::kDouble).requires_grad_();
  AdamW opt({{"w", p, {}, {}, true}}, {0.9, 0.99, 1e-8, 0.1});
  p.mutable_grad() = torch::tensor({0.5, 0.25}, torch::kDouble);
  opt.step(0.01);
  // Step 1: m = 0.1 g, v = 0.01 g^2, bias-corrected m/sqrt(v) = sign(g).
  EXPECT_NEAR(p[0].item<double>(), 1.0 * (1 - 0.001) - 0.01 * 0.5 / (0.5 + 1e-8), 1e-12);
  EXPECT_NEAR(p[1].item<double>(), -2.0 * (1 - 0.001) - 0.01 * 0.25 / (0.25 + 1e-8), 1e-12);
}

TEST(Schedule, WarmupThenCosine) {
  EXPECT_DOUBLE_EQ(lr_at(0, 100, 10, 1.0, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(9, 100, 10, 1.0, 0.1), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(10, 100, 10, 1.0, 0.1), 1.0);
  EXPECT_NEAR(lr_at(55, 100, 10, 1.0, 0.1), 0.55, 1e-12);
  EXPECT_NEAR(lr_at(100, 100, 10, 1.0, 0.1), 0.1, 1e-12);
}

}  // namespace
