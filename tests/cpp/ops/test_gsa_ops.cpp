// The C++ op API (include/ravensp/ops.h) as the launcher uses it: autograd
// through gsa_chunk equals autograd through gsa_recurrent, inference mode
// works, and bad arguments fail before any work with the argument's name.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ravensp/ops.h"

namespace {

struct Inputs {
  torch::Tensor q, k, v, s, g, hk0, hv0;
};

Inputs make_inputs(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t M) {
  torch::manual_seed(0);
  auto opt = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  Inputs in;
  in.q = (0.5 * torch::randn({B, T, H, K}, opt.requires_grad(false))).requires_grad_();
  in.k = (0.5 * torch::randn({B, T, H, K}, opt.requires_grad(false))).requires_grad_();
  in.v = torch::randn({B, T, H, V}, opt);
  auto g = -0.5 * torch::rand({B, T, H, M}, torch::kDouble);
  in.g = g.clone().requires_grad_();
  in.s = (1 - g.exp()).requires_grad_();
  in.hk0 = (0.3 * torch::randn({B, H, K, M}, torch::kDouble)).requires_grad_();
  in.hv0 = (0.3 * torch::randn({B, H, M, V}, torch::kDouble)).requires_grad_();
  return in;
}

std::vector<torch::Tensor> grads_of(bool chunked, const Inputs& in) {
  for (auto t : {in.q, in.k, in.v, in.s, in.g, in.hk0, in.hv0}) t.mutable_grad() = torch::Tensor();
  auto [o, hk, hv] = chunked ? ravensp::ops::gsa_chunk(in.q, in.k, in.v, in.s, in.g, 0.5, in.hk0,
                                                       in.hv0, std::nullopt, 16)
                             : ravensp::ops::gsa_recurrent(in.q, in.k, in.v, in.s, in.g, 0.5,
                                                           in.hk0, in.hv0);
  auto loss = (o * o).sum() + hk.sum() + (hv * hv).sum();
  loss.backward();
  return {o.detach(), in.q.grad(), in.k.grad(), in.v.grad(), in.s.grad(),
          in.g.grad(), in.hk0.grad(), in.hv0.grad()};
}

TEST(GsaOps, ChunkAutogradEqualsRecurrentAutograd) {
  Inputs in = make_inputs(2, 37, 2, 8, 4, 6);
  auto a = grads_of(true, in);
  auto b = grads_of(false, in);
  const char* names[] = {"o", "dq", "dk", "dv", "ds", "dg", "dhk0", "dhv0"};
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].defined() && b[i].defined()) << names[i];
    ASSERT_GT(b[i].abs().max().item<double>(), 1e-4) << names[i];
    EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 1e-10) << names[i];
  }
}

TEST(GsaOps, InferenceModeRunsForward) {
  Inputs in = make_inputs(1, 10, 1, 4, 4, 4);
  c10::InferenceMode guard;
  auto [o, hk, hv] = ravensp::ops::gsa_chunk(in.q.detach(), in.k.detach(), in.v.detach(),
                                             in.s.detach(), in.g.detach(), 1.0);
  EXPECT_EQ(o.sizes(), in.v.sizes());
  EXPECT_EQ(hk.sizes(), (std::vector<int64_t>{1, 1, 4, 4}));
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(GsaOps, BadInputsNameTheArgument) {
  Inputs in = make_inputs(1, 8, 2, 4, 4, 4);
  auto q = in.q.detach(), k = in.k.detach(), v = in.v.detach(), s = in.s.detach(),
       g = in.g.detach();
  auto msg = error_of([&] { ravensp::ops::gsa_chunk(q, k.narrow(3, 0, 3), v, s, g, 1.0); });
  EXPECT_NE(msg.find("k head dim"), std::string::npos) << msg;
  msg = error_of([&] { ravensp::ops::gsa_chunk(q, k, v, s.to(torch::kFloat), g, 1.0); });
  EXPECT_NE(msg.find("s must have q's dtype"), std::string::npos) << msg;
  auto cu = torch::tensor({0, 5, 3, 8}, torch::kLong);
  msg = error_of([&] { ravensp::ops::gsa_chunk(q, k, v, s, g, 1.0, std::nullopt, std::nullopt, cu); });
  EXPECT_NE(msg.find("cu_seqlens must be strictly increasing"), std::string::npos) << msg;
  msg = error_of([&] {
    ravensp::ops::gsa_chunk(q, k, v, s, g, 1.0, torch::zeros({1, 2, 4, 5}, torch::kDouble));
  });
  EXPECT_NE(msg.find("hk0"), std::string::npos) << msg;
}

}  // namespace
