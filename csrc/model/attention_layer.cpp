// Softmax attention layers of a hybrid (FLA's Attention: q/k/v/o projections,
// RoPE at global positions, GQA). A whole sequence on one rank runs ATen's fused
// causal SDPA; a split sequence or a sliding window goes through the ring op
// (DESIGN.md §5), which on one rank (kNoGroup) is its local path.
#include <cmath>

#include "model/layers.h"
#include "ravensp/ring_attention.h"

namespace ravensp::model {

AttentionImpl::AttentionImpl(const ModelConfig& cfg, int64_t layer_idx)
    : cfg_(cfg), layer_idx_(layer_idx) {
  const int64_t D = cfg.hidden_size, H = cfg.attn_num_heads, Hkv = cfg.attn_kv_heads();
  const int64_t hd = D / H;
  auto lin = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  q_proj = register_module("q_proj", lin(D, H * hd));
  k_proj = register_module("k_proj", lin(D, Hkv * hd));
  v_proj = register_module("v_proj", lin(D, Hkv * hd));
  o_proj = register_module("o_proj", lin(H * hd, D));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const ForwardContext& ctx) {
  const int64_t H = cfg_.attn_num_heads, Hkv = cfg_.attn_kv_heads();
  const int64_t hd = cfg_.hidden_size / H;
  auto positions = ctx.positions.to(x.device());
  auto q = apply_rope(q_proj(x).unflatten(-1, {H, hd}), positions, cfg_.rope_theta);
  auto k = apply_rope(k_proj(x).unflatten(-1, {Hkv, hd}), positions, cfg_.rope_theta);
  auto v = v_proj(x).unflatten(-1, {Hkv, hd});
  if (ctx.sp_size > 1 || cfg_.attn_window > 0) {
    const int64_t group = ctx.sp_size > 1 ? ctx.sp_group : sp::kNoGroup;
    // The ring op wants one dtype; under autocast the rotated q/k are fp32 while
    // v is the projection's bf16.
    auto dt = v.scalar_type();
    auto o = sp::ring_attention(q.to(dt), k.to(dt), v, 1.0 / std::sqrt(static_cast<double>(hd)),
                                /*causal=*/true, cfg_.attn_window, std::nullopt, group,
                                ctx.layout);
    return o_proj(o.flatten(-2));
  }
  // SDPA wants [B, H, L, D]. The kv heads are repeated explicitly: with
  // enable_gqa some backends fall back to the math kernel, whose L x L scores do
  // not fit at long contexts; the repeat costs only L x H x hd.
  if (Hkv != H) {
    k = k.repeat_interleave(H / Hkv, -2);
    v = v.repeat_interleave(H / Hkv, -2);
  }
  auto o = at::scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                            v.transpose(1, 2), {}, 0.0, /*is_causal=*/true);
  return o_proj(o.transpose(1, 2).flatten(-2));
}

GatedMLPImpl::GatedMLPImpl(int64_t hidden, int64_t intermediate) {
  auto lin = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  gate_proj = register_module("gate_proj", lin(hidden, intermediate));
  up_proj = register_module("up_proj", lin(hidden, intermediate));
  down_proj = register_module("down_proj", lin(intermediate, hidden));
}

at::Tensor GatedMLPImpl::forward(const at::Tensor& x) {
  return down_proj(at::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace ravensp::model
