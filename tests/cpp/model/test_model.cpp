// The model room's tests: Gumbel noise bit-equal to python/ravensp/nn/gumbel.py,
// checkpoint parameter names, checkpointed blocks giving the plain gradients,
// causality of the whole LM (Raven and hybrid), and configuration errors.
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <torch/torch.h>

#include "model/layers.h"
#include "ravensp/model.h"
#include "ravensp/ring_attention.h"

namespace {

using ravensp::model::ForwardContext;
using ravensp::model::ModelConfig;

// Python: gumbel_noise(1234, 17, 3, rows=[[0,0,1],[5,5,5]],
// positions=[[0,1,1000000],[7,2**33,3]], 2 heads, 3 slots), values as float.hex().
const double kGumbelF32[] = {
    0x1.729fa80000000p-1, -0x1.54c18a0000000p-1, 0x1.5aa6620000000p-1, 0x1.180d0e0000000p+1,
    0x1.b7ab120000000p-3, 0x1.78311c0000000p-2, 0x1.12a87e0000000p+1, -0x1.cab2340000000p+0,
    0x1.1acba40000000p+0, -0x1.f9e67a0000000p-1, 0x1.bf40080000000p+1, -0x1.11b7820000000p-2,
    0x1.facbf40000000p-3, 0x1.037ca00000000p+0, 0x1.0447600000000p-1, -0x1.35d34e0000000p-3,
    0x1.6554460000000p-4, 0x1.51ad180000000p+1, 0x1.0dcb000000000p-4, -0x1.bd27f20000000p-2,
    -0x1.6247e80000000p+0, -0x1.26e02e0000000p-5, -0x1.9b215e0000000p-2, 0x1.6436920000000p+1,
    -0x1.5dd1940000000p+0, 0x1.546e2a0000000p-2, -0x1.7dddb60000000p-2, 0x1.efac6c0000000p-2,
    0x1.275ec60000000p+2, -0x1.0cde9c0000000p-1, -0x1.0c0b2c0000000p-1, -0x1.7d6d780000000p-2,
    0x1.6c905e0000000p-1, -0x1.9a73ca0000000p-2, 0x1.1aceaa0000000p+0, 0x1.9d86680000000p-2,
};
const double kGumbelF64[] = {
    0x1.729f93fb214fep-1, -0x1.54c13bd2d3f66p-1, 0x1.5aa680df4acc7p-1, 0x1.180d030a6a152p+1,
    0x1.b7aad016835a5p-3, 0x1.783117cd123c5p-2, 0x1.12a85110de51bp+1, -0x1.cab2d1bd8269bp+0,
    0x1.1acbaba1a9005p+0, -0x1.f9e633bc18d3ap-1, 0x1.bf406fc837291p+1, -0x1.11b7c43ba6435p-2,
    0x1.facb613a254b3p-3, 0x1.037ccae4be1fap+0, 0x1.044743fadec9cp-1, -0x1.35d325fe4bd1fp-3,
    0x1.65562323d092ep-4, 0x1.51ad1c1108066p+1, 0x1.0dcb088ff6c76p-4, -0x1.bd282d9e888bfp-2,
    -0x1.6247d4dd52afdp+0, -0x1.26de7ac54e30ap-5, -0x1.9b219d168b030p-2, 0x1.643675278c9c0p+1,
    -0x1.5dd1c2241c17fp+0, 0x1.546e73d03fdccp-2, -0x1.7dddf3ba5e402p-2, 0x1.efac67c620f51p-2,
    0x1.275dc99793c87p+2, -0x1.0cdebfc84ae52p-1, -0x1.0c0ae4e1ee10fp-1, -0x1.7d6d421d75c81p-2,
    0x1.6c902684edaabp-1, -0x1.9a73db7ec999ap-2, 0x1.1acee733819b1p+0, 0x1.9d85c42604324p-2,
};

ModelConfig tiny(bool hybrid) {
  ModelConfig c;
  c.vocab_size = 23;
  c.hidden_size = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_slots = 6;
  c.topk = 3;
  c.intermediate_size = 24;
  c.chunk_size = 8;
  if (hybrid) {
    c.attn_layers = {1};
    c.attn_num_heads = 4;
    c.attn_num_kv_heads = 2;
  }
  return c;
}

ForwardContext context(int64_t T) {
  ForwardContext ctx;
  ctx.positions = torch::arange(T, torch::kLong);
  ctx.gumbel_seed = 5;
  ctx.gumbel_step = 2;
  return ctx;
}

TEST(Gumbel, MatchesPythonBitForBit) {
  auto rows = torch::tensor(std::vector<int64_t>{0, 0, 1, 5, 5, 5}).view({2, 3});
  auto pos = torch::tensor(std::vector<int64_t>{0, 1, 1000000, 7, int64_t{1} << 33, 3}).view({2, 3});
  for (auto dt : {torch::kFloat, torch::kDouble}) {
    auto n = ravensp::model::gumbel_noise(1234, 17, 3, rows, pos, 2, 3, dt).to(torch::kDouble);
    ASSERT_EQ(n.sizes(), (std::vector<int64_t>{2, 3, 2, 3}));
    const double* want = dt == torch::kFloat ? kGumbelF32 : kGumbelF64;
    auto flat = n.flatten();
    // The hashed uniforms are identical bits; -log(-log(u)) in fp32 goes through
    // ATen's vectorised log, whose last bit depends on the CPU's SIMD path (it
    // differed by one ulp on the H100 machine's CPU). fp64 must match exactly.
    const double rel = dt == torch::kFloat ? 0x1p-22 : 0.0;  // two fp32 ulps
    for (int64_t i = 0; i < flat.numel(); ++i) {
      EXPECT_LE(std::abs(flat[i].item<double>() - want[i]), rel * std::abs(want[i]))
          << "element " << i << " dtype " << dt;
    }
  }
}

TEST(Model, ParameterNamesFollowFla) {
  torch::manual_seed(0);
  ravensp::model::RavenForCausalLM m(tiny(true));
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  for (const char* want :
       {"model.embeddings.weight", "model.layers.0.attn_norm.weight", "model.layers.0.attn.q_proj.weight",
        "model.layers.0.attn.k_proj.weight", "model.layers.0.attn.v_proj.weight",
        "model.layers.0.attn.r_proj.weight", "model.layers.0.attn.a_proj.weight",
        "model.layers.0.attn.A_log", "model.layers.0.attn.dt_bias", "model.layers.0.attn.q_norm.weight",
        "model.layers.0.attn.k_norm.weight", "model.layers.0.attn.g_norm.weight",
        "model.layers.0.attn.o_proj.weight", "model.layers.0.mlp_norm.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight", "model.layers.1.attn.q_proj.weight",
        "model.layers.1.attn.o_proj.weight", "model.norm.weight", "lm_head.weight"}) {
    EXPECT_TRUE(names.count(want)) << "missing " << want;
  }
  EXPECT_FALSE(names.count("model.layers.1.attn.A_log")) << "layer 1 is softmax attention";
  auto decay = [&](const std::string& n) {
    auto p = m->named_parameters()[n];
    return !ravensp::model::RavenForCausalLMImpl::no_weight_decay(n, p);
  };
  EXPECT_TRUE(decay("model.layers.0.attn.q_proj.weight"));
  EXPECT_FALSE(decay("model.layers.0.attn.A_log"));
  EXPECT_FALSE(decay("model.layers.0.attn.dt_bias"));
  EXPECT_FALSE(decay("model.layers.0.attn_norm.weight"));
}

// Gradients of every parameter and of the input, with and without recompute.
std::vector<torch::Tensor> grads(bool hybrid, bool checkpoint, int64_t T, bool offload = false) {
  torch::manual_seed(0);
  ravensp::model::RavenForCausalLM m(tiny(hybrid));
  m->to(torch::kDouble);
  m->train();
  auto ids = torch::randint(0, 23, {2, T}, torch::kLong);
  auto ctx = context(T);
  ctx.checkpoint_blocks = checkpoint;
  ctx.offload_checkpoints = offload;
  auto h = m->forward(ids, ctx);
  auto loss = (h * h).sum() + torch::linear(h, m->head_weight()).logsumexp(-1).sum();
  loss.backward();
  std::vector<torch::Tensor> out{h.detach()};
  for (const auto& p : m->parameters()) out.push_back(p.grad().clone());
  return out;
}

TEST(Model, CheckpointedBlocksGiveThePlainGradients) {
  for (bool hybrid : {false, true}) {
    for (int64_t T : {37, 80}) {  // recurrent (<= 64) and chunked GSA paths
      auto a = grads(hybrid, false, T);
      auto b = grads(hybrid, true, T);
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_GT(a[i].abs().max().item<double>(), 0.0) << "tensor " << i << " is all zero";
        EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 1e-12)
            << "tensor " << i << " hybrid " << hybrid << " T " << T;
      }
    }
  }
}

// Offloaded checkpoints round-trip through host memory (a copy on CPU, pinned
// memory on a GPU): the same values and gradients as keeping them in place.
TEST(Model, OffloadedCheckpointsGiveThePlainGradients) {
  for (bool hybrid : {false, true}) {
    auto a = grads(hybrid, false, 80);
    auto b = grads(hybrid, true, 80, /*offload=*/true);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LT((a[i] - b[i]).abs().max().item<double>(), 1e-12) << "tensor " << i << " hybrid " << hybrid;
  }
}

// model.router_fp32: under bf16 autocast the router runs in fp32, so the output
// differs from the bf16-router model; without autocast the option changes nothing.
TEST(Model, RouterFp32AppliesUnderAutocastOnly) {
  auto out = [](bool router_fp32, bool autocast) {
    torch::manual_seed(3);
    auto cfg = tiny(false);
    cfg.hidden_size = 64;
    cfg.router_fp32 = router_fp32;
    ravensp::model::RavenForCausalLM m(cfg);
    m->train();
    auto ids = torch::randint(0, 23, {2, 80}, torch::kLong);
    torch::NoGradGuard no_grad;
    at::autocast::set_autocast_enabled(at::kCPU, autocast);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    auto h = m->forward(ids, context(80)).to(torch::kFloat);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
    return h;
  };
  EXPECT_TRUE(torch::equal(out(true, false), out(false, false)));
  EXPECT_GT((out(true, true) - out(false, true)).abs().max().item<double>(), 0.0);
}

TEST(Model, OutputsAreCausal) {
  for (bool hybrid : {false, true}) {
    torch::manual_seed(1);
    ravensp::model::RavenForCausalLM m(tiny(hybrid));
    m->to(torch::kDouble);
    m->eval();
    const int64_t T = 70;
    auto ids = torch::randint(0, 23, {1, T}, torch::kLong);
    auto ids2 = ids.clone();
    ids2[0][50] = (ids[0][50].item<int64_t>() + 1) % 23;
    auto a = m->forward(ids, context(T)), b = m->forward(ids2, context(T));
    EXPECT_LT((a.narrow(1, 0, 50) - b.narrow(1, 0, 50)).abs().max().item<double>(), 1e-12);
    EXPECT_GT((a.narrow(1, 50, 20) - b.narrow(1, 50, 20)).abs().max().item<double>(), 1e-6);
  }
}

TEST(Model, TrainingNoiseDependsOnTheKeyOnly) {
  torch::manual_seed(2);
  ravensp::model::RavenForCausalLM m(tiny(false));
  m->to(torch::kDouble);
  m->train();
  auto ids = torch::randint(0, 23, {2, 40}, torch::kLong);
  auto ctx = context(40);
  auto a = m->forward(ids, ctx), b = m->forward(ids, ctx);
  EXPECT_EQ((a - b).abs().max().item<double>(), 0.0) << "same key, same noise";
  ctx.gumbel_step = 3;
  auto c = m->forward(ids, ctx);
  EXPECT_GT((a - c).abs().max().item<double>(), 0.0) << "another step draws other noise";
}

TEST(ModelConfig, ErrorsNameTheOption) {
  auto c = tiny(false);
  c.num_heads = 3;  // does not divide 16
  try {
    c.validate();
    FAIL() << "expected an error";
  } catch (const ravensp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.num_heads=3"), std::string::npos) << e.what();
  }
  c = tiny(true);
  c.attn_layers = {2};
  EXPECT_THROW(c.validate(), ravensp::Error);
  c = tiny(false);
  c.topk = 7;
  EXPECT_THROW(c.validate(), ravensp::Error);
}

}  // namespace

namespace {

// The attention layer's two paths (fused SDPA for a whole sequence, the ring op
// on one rank) agree in fp64, outputs and gradients.
TEST(Attention, SdpaAndRingOpAgree) {
  torch::manual_seed(3);
  const int64_t B = 1, T = 40, H = 4, Hkv = 2, D = 8;
  auto q0 = torch::randn({B, T, H, D}, torch::kDouble);
  auto k0 = torch::randn({B, T, Hkv, D}, torch::kDouble);
  auto v0 = torch::randn({B, T, Hkv, D}, torch::kDouble);
  auto w = torch::randn({B, T, H, D}, torch::kDouble);
  std::vector<torch::Tensor> res[2];
  for (int path = 0; path < 2; ++path) {
    auto q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
    torch::Tensor o;
    if (path == 0) {
      o = at::scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), {},
                                           0.0, true, std::nullopt, true)
              .transpose(1, 2);
    } else {
      o = ravensp::sp::ring_attention(q, k, v, 1.0 / std::sqrt(8.0), true, 0, std::nullopt,
                                      ravensp::sp::kNoGroup, ravensp::sp::Layout::kContiguous);
    }
    (o * w).sum().backward();
    res[path] = {o.detach(), q.grad(), k.grad(), v.grad()};
  }
  const char* names[] = {"o", "dq", "dk", "dv"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_LT((res[0][i] - res[1][i]).abs().max().item<double>(), 1e-12) << names[i];
  }
}

}  // namespace
