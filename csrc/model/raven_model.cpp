// Blocks, the backbone and the causal LM: FLA's module tree and parameter names,
// FLA's initialisation (normal(0, initializer_range) for linears and embeddings;
// o_proj/down_proj kaiming-uniform scaled by 1/sqrt(2 * num_layers)).
#include <cmath>

#include "model/layers.h"

namespace ravensp::model {

BlockImpl::BlockImpl(const ModelConfig& cfg, int64_t layer_idx)
    : is_attn_(cfg.is_attn_layer(layer_idx)) {
  attn_norm = register_module("attn_norm", RMSNorm(cfg.hidden_size, true, cfg.norm_eps));
  if (is_attn_) {
    attention = register_module("attn", Attention(cfg, layer_idx));
  } else {
    raven = register_module("attn", RavenAttention(cfg, layer_idx));
  }
  mlp_norm = register_module("mlp_norm", RMSNorm(cfg.hidden_size, true, cfg.norm_eps));
  mlp = register_module("mlp", GatedMLP(cfg.hidden_size, cfg.mlp_size()));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, const ForwardContext& ctx) {
  auto h = attn_norm(x);
  h = is_attn_ ? attention(h, ctx) : raven(h, ctx);
  auto y = x + h;
  return y + mlp(mlp_norm(y));
}

namespace detail {

RavenModelImpl::RavenModelImpl(const ModelConfig& cfg) {
  embeddings = register_module("embeddings", torch::nn::Embedding(cfg.vocab_size, cfg.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_layers; ++i) layers->push_back(Block(cfg, i));
  norm = register_module("norm", RMSNorm(cfg.hidden_size, true, cfg.norm_eps));
}

at::Tensor RavenModelImpl::forward(const at::Tensor& input_ids, const ForwardContext& ctx) {
  auto x = embeddings(input_ids);
  for (const auto& layer : *layers) {
    auto block = layer->as<BlockImpl>();
    if (ctx.checkpoint_blocks && is_training()) {
      // The context is captured by value: backward reruns the block with the
      // same positions, SP group and Gumbel key as the forward.
      x = checkpointed([block, ctx](const at::Tensor& in) { return block->forward(in, ctx); }, x,
                       ctx.offload_checkpoints);
    } else {
      x = block->forward(x, ctx);
    }
  }
  return norm(x);
}

}  // namespace detail

RavenForCausalLMImpl::RavenForCausalLMImpl(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  model_ = register_module("model", std::make_shared<detail::RavenModelImpl>(cfg_));
  if (!cfg_.tie_word_embeddings) {
    lm_head_ = register_module("lm_head", torch::nn::Linear(torch::nn::LinearOptions(
                                              cfg_.hidden_size, cfg_.vocab_size).bias(false)));
  }
  reset_parameters();
}

at::Tensor RavenForCausalLMImpl::forward(const at::Tensor& input_ids, const ForwardContext& ctx) {
  RAVENSP_CHECK(input_ids.dim() == 2, "input_ids must be [B, L], got ", shape_str(input_ids.sizes()));
  return model_->forward(input_ids, ctx);
}

at::Tensor RavenForCausalLMImpl::head_weight() const {
  return cfg_.tie_word_embeddings ? model_->embeddings->weight : lm_head_->weight;
}

bool RavenForCausalLMImpl::no_weight_decay(const std::string& name, const at::Tensor& p) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return p.dim() < 2 || ends_with("A_log") || ends_with("dt_bias") || ends_with("r_bias");
}

void RavenForCausalLMImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const double std = cfg_.initializer_range;
  const double residual_scale = 1.0 / std::sqrt(2.0 * static_cast<double>(cfg_.num_layers));
  for (auto& item : named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    auto& m = item.value();
    if (auto* lin = m->as<torch::nn::LinearImpl>()) {
      auto ends_with = [&](const std::string& suffix) {
        return name.size() >= suffix.size() &&
               name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
      };
      // The projections that write into the residual stream.
      if (ends_with(".o_proj") || ends_with(".down_proj")) {
        // FLA's rescale_prenorm_residual: kaiming_uniform(a=sqrt(5)), then / sqrt(2L).
        torch::nn::init::kaiming_uniform_(lin->weight, std::sqrt(5.0));
        lin->weight.mul_(residual_scale);
      } else {
        lin->weight.normal_(0.0, std);
      }
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = m->as<torch::nn::EmbeddingImpl>()) {
      emb->weight.normal_(0.0, std);
    } else if (auto* raven = m->as<RavenAttentionImpl>()) {
      raven->reset_decay_parameters();
    }
  }
}

int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace ravensp::model
