// The Raven layer in C++ (DESIGN.md §2): the forward of python/ravensp/nn/raven.py
// for training (no cache, no padding mask), with the GSA core through ops::gsa_*
// on one rank and sp::sp_gsa when the sequence is split over an SP group.
#include <ATen/autocast_mode.h>

#include <cmath>

#include "model/layers.h"
#include "ravensp/ops.h"

namespace ravensp::model {
namespace {

constexpr int64_t kRecurrentMaxLen = 64;  // raven.py: shorter inputs run token by token

torch::nn::Linear linear(int64_t in, int64_t out, bool bias = false) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

at::Tensor feature(const std::string& name, const at::Tensor& x, torch::nn::Linear& t2r) {
  if (name == "swish") return at::silu(x);
  if (name == "relu") return at::relu(x);
  return at::relu(t2r(x));
}

}  // namespace

RavenAttentionImpl::RavenAttentionImpl(const ModelConfig& cfg, int64_t layer_idx)
    : cfg_(cfg), layer_idx_(layer_idx) {
  const int64_t D = cfg.hidden_size, H = cfg.num_heads, Hkv = cfg.kv_heads(), M = cfg.slots();
  const int64_t G = H / Hkv, K = cfg.head_k_dim(), V = cfg.head_v_dim();
  if (cfg.feature_map == "t2r") {
    auto fm = register_module("feature_map", std::make_shared<torch::nn::Module>());
    t2r = fm->register_module("layer", linear(K, K));
  }
  q_proj = register_module("q_proj", linear(D, H * K));
  k_proj = register_module("k_proj", linear(D, H * K / G));
  v_proj = register_module("v_proj", linear(D, H * V / G));
  if (cfg.decay_type == "Mamba2") {
    a_proj = register_module("a_proj", linear(D, H));
    A_log = register_parameter("A_log", torch::zeros({H}));
    dt_bias = register_parameter("dt_bias", torch::zeros({H}));
    reset_decay_parameters();
  } else {
    f_proj = register_module("f_proj", linear(D, Hkv * M));
  }
  if (cfg.bias_rmm) r_bias = register_parameter("r_bias", torch::zeros({H, M}));
  if (cfg.router_type == "mlp") {
    r_mlp = register_module("r_proj", torch::nn::Sequential(linear(D, D, true), torch::nn::GELU(),
                                                             linear(D, H * M)));
  } else {
    r_lin = register_module("r_proj", linear(D, H * M));
  }
  q_norm = register_module("q_norm", RMSNorm(K, true, cfg.norm_eps));
  k_norm = register_module("k_norm", RMSNorm(K, true, cfg.norm_eps));
  if (cfg.use_output_gate) {
    o_gate_proj = register_module("o_gate_proj", linear(D, H * V));
    o_norm = register_module("o_norm", GatedRMSNorm(V, cfg.norm_eps));
  } else {
    g_norm = register_module("g_norm", RMSNorm(H * V, true, cfg.norm_eps));
  }
  o_proj = register_module("o_proj", linear(H * V, D));
}

void RavenAttentionImpl::reset_decay_parameters() {
  if (!A_log.defined()) return;
  torch::NoGradGuard no_grad;
  const int64_t H = cfg_.num_heads;
  A_log.copy_(torch::empty({H}).uniform_(0, 16).log());
  // dt log-uniform in [1e-3, 0.1], floored at 1e-4, stored as softplus^-1(dt).
  auto dt = torch::exp(torch::rand({H}) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3));
  dt = dt.clamp_min(1e-4);
  dt_bias.copy_(dt + torch::log(-torch::expm1(-dt)));
}

at::Tensor RavenAttentionImpl::decay(const at::Tensor& x) {
  if (cfg_.decay_type == "Mamba2") {
    auto a = a_proj(x);
    auto A = A_log.to(compute_dtype(A_log.scalar_type())).exp();
    return (-A * at::softplus(a.to(compute_dtype(a.scalar_type())) + dt_bias)).unsqueeze(-1);
  }
  auto f = f_proj(x).unflatten(-1, {cfg_.kv_heads(), cfg_.slots()});
  f = at::log_sigmoid(f) / static_cast<double>(cfg_.gate_logit_normalizer);
  return f.repeat_interleave(cfg_.num_heads / cfg_.kv_heads(), -2);
}

at::Tensor RavenAttentionImpl::router_logits(const at::Tensor& x) {
  auto run = [&](const at::Tensor& in) { return r_mlp ? r_mlp->forward(in) : r_lin(in); };
  const auto dev = x.device().type();
  if (!cfg_.router_fp32 || !at::autocast::is_autocast_enabled(dev)) return run(x);
  // Autocast off for the router only, restored even if it throws (as raven.py does).
  struct AutocastOff {
    at::DeviceType dev;
    ~AutocastOff() { at::autocast::set_autocast_enabled(dev, true); }
  } off{dev};
  at::autocast::set_autocast_enabled(dev, false);
  const auto dtype = (r_mlp ? r_mlp->parameters().front() : r_lin->weight).scalar_type();
  return run(x.to(dtype));
}

at::Tensor RavenAttentionImpl::forward(const at::Tensor& x, const ForwardContext& ctx) {
  const int64_t B = x.size(0), L = x.size(1);
  const int64_t H = cfg_.num_heads, Hkv = cfg_.kv_heads(), M = cfg_.slots();
  const int64_t K = cfg_.head_k_dim(), V = cfg_.head_v_dim(), G = H / Hkv;
  RAVENSP_CHECK(ctx.positions.defined() && ctx.positions.numel() == L,
                "RavenAttention: ctx.positions must hold the ", L, " global positions of this shard");
  auto q = q_proj(x).unflatten(-1, {H, K});
  auto k = k_proj(x).unflatten(-1, {Hkv, K});
  auto v = v_proj(x).unflatten(-1, {Hkv, V});
  auto logits = router_logits(x).unflatten(-1, {H, M});
  auto f = decay(x);

  q = q_norm(feature(cfg_.feature_map, q, t2r));
  k = k_norm(feature(cfg_.feature_map, k, t2r));
  auto positions = ctx.positions.to(x.device());
  if (cfg_.use_rope) {
    q = apply_rope(q, positions, cfg_.rope_theta);
    k = apply_rope(k, positions, cfg_.rope_theta);
  }
  v = at::silu(v);

  if (cfg_.add_gumbel_noise && is_training()) {
    // Keys per token: its row and its global position, as raven.py draws them.
    auto ids = ctx.rows.defined() ? ctx.rows.to(positions.device(), at::kLong)
                                  : at::arange(B, positions.options());
    RAVENSP_CHECK(ids.numel() == B, "RavenAttention: ctx.rows must hold ", B, " row ids, got ",
                  ids.numel());
    auto rows = ids.unsqueeze(1).expand({B, L});
    logits = logits + gumbel_noise(ctx.gumbel_seed, ctx.gumbel_step, layer_idx_, rows,
                                   positions.unsqueeze(0).expand({B, L}), H, M,
                                   logits.scalar_type());
  }
  auto w = route(logits, cfg_.topk, cfg_.router_score, r_bias);
  auto gf = f * w;
  auto g = gf.to(q.scalar_type());
  // s = 1 - e^g from the unrounded product: small decays put e^g within a bf16 ulp
  // of 1, where 1 - exp() of the rounded g cancels (raven.py does the same).
  auto s = (-at::expm1(gf)).to(q.scalar_type());
  if (G > 1) {
    k = k.repeat_interleave(G, -2);
    v = v.repeat_interleave(G, -2);
  }
  const double scale = cfg_.scale > 0 ? cfg_.scale : 1.0 / std::sqrt(static_cast<double>(K));
  at::Tensor o;
  if (ctx.sp_size > 1) {
    o = sp::sp_gsa(q, k, v, s, g, scale, std::nullopt, std::nullopt, std::nullopt, ctx.sp_group,
                   ctx.layout, ctx.exchange, cfg_.chunk_size);
  } else if (L <= kRecurrentMaxLen) {
    o = std::get<0>(ops::gsa_recurrent(q, k, v, s, g, scale));
  } else {
    o = std::get<0>(ops::gsa_chunk(q, k, v, s, g, scale, std::nullopt, std::nullopt,
                                   std::nullopt, cfg_.chunk_size));
  }
  if (cfg_.use_output_gate) {
    auto gate = o_gate_proj(x).unflatten(-1, {H, V});
    return o_proj(o_norm(at::silu(o), gate).flatten(-2));
  }
  return o_proj(g_norm(at::silu(o.flatten(-2))));
}

}  // namespace ravensp::model
