// The model room's building blocks (internal header): norms, the Raven layer,
// softmax attention, the SwiGLU MLP, the block and the backbone. Each module
// registers its parameters under the names of the Python/FLA modules it mirrors.
#pragma once

#include <torch/torch.h>

#include <functional>

#include "ravensp/model.h"

namespace ravensp::model {

// float32, or wider when x is (float64 stays float64): what norms and decays run in.
at::ScalarType compute_dtype(at::ScalarType st);
// y = x / rms(x) * weight over the last dim, in compute_dtype, returned in x's dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, bool affine, double eps);
  at::Tensor forward(const at::Tensor& x) { return rms_norm(x, weight, eps_); }
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// FLA's FusedRMSNormGated with swish: rms_norm(x) * weight * silu(gate).
class GatedRMSNormImpl : public torch::nn::Module {
 public:
  GatedRMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& gate);
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(GatedRMSNorm);

// Counter-based Gumbel noise, the same hash and float steps as
// python/ravensp/nn/gumbel.py, so values agree bit for bit for one key.
at::Tensor gumbel_noise(int64_t seed, int64_t step, int64_t layer, const at::Tensor& rows,
                        const at::Tensor& positions, int64_t num_heads, int64_t num_slots,
                        at::ScalarType dtype);
// Dense top-k write weights [..., M] (python/ravensp/nn/router.py: route).
at::Tensor route(const at::Tensor& logits, int64_t topk, const std::string& score,
                 const at::Tensor& bias);
// Non-interleaved rotary embedding of x [B, L, H, D] at integer positions [L].
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, double theta);

class RavenAttentionImpl : public torch::nn::Module {
 public:
  RavenAttentionImpl(const ModelConfig& cfg, int64_t layer_idx);
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx);
  void reset_decay_parameters();  // A_log, dt_bias as the public layer draws them

 private:
  at::Tensor decay(const at::Tensor& x);  // [B, L, H, 1] or [B, L, H, M], <= 0
  at::Tensor router_logits(const at::Tensor& x);  // [B, L, H * M]; see ModelConfig::router_fp32
  ModelConfig cfg_;
  int64_t layer_idx_;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, a_proj{nullptr},
      f_proj{nullptr}, o_gate_proj{nullptr}, o_proj{nullptr}, t2r{nullptr};
  torch::nn::Linear r_lin{nullptr};  // r_proj for router_type=lin
  torch::nn::Sequential r_mlp{nullptr};  // r_proj for router_type=mlp (keys r_proj.0, r_proj.2)
  at::Tensor A_log, dt_bias, r_bias;
  RMSNorm q_norm{nullptr}, k_norm{nullptr}, g_norm{nullptr};
  GatedRMSNorm o_norm{nullptr};
};
TORCH_MODULE(RavenAttention);

// FLA's Attention layer (q_proj, k_proj, v_proj, o_proj; RoPE; GQA).
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& cfg, int64_t layer_idx);
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx);

 private:
  ModelConfig cfg_;
  int64_t layer_idx_;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(Attention);

// FLA's GatedMLP with swish: down_proj(silu(gate_proj(x)) * up_proj(x)).
class GatedMLPImpl : public torch::nn::Module {
 public:
  GatedMLPImpl(int64_t hidden, int64_t intermediate);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(GatedMLP);

// x + attn(attn_norm(x)), then + mlp(mlp_norm(x)).
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& cfg, int64_t layer_idx);
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx);

 private:
  bool is_attn_;
  RMSNorm attn_norm{nullptr}, mlp_norm{nullptr};
  RavenAttention raven{nullptr};
  Attention attention{nullptr};
  GatedMLP mlp{nullptr};
};
TORCH_MODULE(Block);

// Runs fn(x) without keeping its activations; backward reruns fn under the same
// grad/autocast state and back-propagates through it (parameters used by fn get
// their gradients accumulated). LibTorch has no torch.utils.checkpoint.
// offload: keep x in host memory (pinned when x is on a GPU) instead of where it is;
// backward copies it back to x's device before rerunning fn.
at::Tensor checkpointed(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x,
                        bool offload = false);

namespace detail {

class RavenModelImpl : public torch::nn::Module {
 public:
  explicit RavenModelImpl(const ModelConfig& cfg);
  at::Tensor forward(const at::Tensor& input_ids, const ForwardContext& ctx);
  torch::nn::Embedding embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};

}  // namespace detail
}  // namespace ravensp::model
