// The model room: Raven and hybrid language models in LibTorch (DESIGN.md §2).
// Parameter names follow FLA's RavenForCausalLM (model.embeddings, model.layers.N.
// {attn_norm, attn, mlp_norm, mlp}, model.norm, lm_head) and the Python
// ravensp.nn.RavenAttention, so checkpoints move between C++ and Python.
// Depends on ops and sp (LibTorch); used by the train room and the launcher.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ravensp/sp.h"

namespace ravensp::model {

namespace detail {
class RavenModelImpl;  // embeddings, blocks, final norm (csrc/model/layers.h)
}

struct ModelConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 1024;
  int64_t num_layers = 24;
  // Raven layers
  int64_t num_heads = 4;
  int64_t num_kv_heads = 0;  // 0: num_heads
  int64_t num_slots = 0;     // 0: head_k_dim, as in the public layer
  int64_t topk = 32;
  double expand_k = 1.0;
  double expand_v = 1.0;
  std::string decay_type = "Mamba2";  // Mamba2 | GLA
  std::string feature_map = "swish";  // swish | relu | t2r
  std::string router_score = "sigmoid";
  std::string router_type = "lin";  // lin | mlp
  bool bias_rmm = false;
  bool add_gumbel_noise = true;
  // Under autocast, router logits in the router's parameter dtype (fp32), not bf16:
  // bf16 logits flip top-k choices that then carry through the slot state.
  bool router_fp32 = true;
  bool use_output_gate = false;
  bool use_rope = false;
  int64_t gate_logit_normalizer = 8;
  double scale = 1.0;  // <= 0: head_k_dim^-0.5
  double norm_eps = 1e-5;
  int64_t chunk_size = 64;
  // MLP: 0 picks FLA's default, 256 * ceil(hidden * 8/3 / 256).
  int64_t intermediate_size = 0;
  // Softmax attention layers of a hybrid (indices into the layer stack).
  std::vector<int64_t> attn_layers;
  int64_t attn_num_heads = 16;
  int64_t attn_num_kv_heads = 0;  // 0: attn_num_heads
  int64_t attn_window = 0;        // 0: full causal attention
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;

  int64_t kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
  int64_t head_k_dim() const { return static_cast<int64_t>(hidden_size * expand_k) / num_heads; }
  int64_t head_v_dim() const { return static_cast<int64_t>(hidden_size * expand_v) / num_heads; }
  int64_t slots() const { return num_slots > 0 ? num_slots : head_k_dim(); }
  int64_t mlp_size() const;
  int64_t attn_kv_heads() const { return attn_num_kv_heads > 0 ? attn_num_kv_heads : attn_num_heads; }
  bool is_attn_layer(int64_t i) const;
  // Every inconsistency (heads not dividing the hidden size, top-k above the
  // slots, an attention index out of range, ...) as one message per problem.
  std::vector<std::string> problems() const;
  void validate() const;  // throws ravensp::Error listing problems()
};

// Where this rank's tokens sit in the global sequence and how the step is keyed.
// One context serves every layer of one forward pass.
struct ForwardContext {
  at::Tensor positions;  // [L] int64 global positions of this rank's tokens
  // [B] int64 identity of each batch row for the Gumbel key (the trainer passes
  // global sequence indices, so noise does not depend on how rows are spread over
  // data-parallel ranks or micro-batches); undefined = 0..B-1 as in raven.py.
  at::Tensor rows;
  int64_t sp_group = 0;  // sp::register_group handle; 0 (sp::kNoGroup) = whole sequence here
  int sp_size = 1;
  sp::Layout layout = sp::Layout::kContiguous;
  sp::StateExchange exchange = sp::StateExchange::kLasp2;
  int64_t gumbel_seed = 0;
  int64_t gumbel_step = 0;
  bool checkpoint_blocks = false;  // recompute each block in backward
  // With checkpoint_blocks: keep each block's saved input in (pinned) host memory
  // and copy it back for the recompute. At 512K tokens per GPU the fp32 block inputs
  // of hybrid-340M are ~51 GB of ~115 (docs/launcher.md).
  bool offload_checkpoints = false;
};

// The whole causal LM. forward() returns the final hidden states (after
// model.norm); the LM head is applied chunk by chunk by the loss (train room),
// so logits are never held for all tokens.
class RavenForCausalLMImpl : public torch::nn::Module {
 public:
  explicit RavenForCausalLMImpl(const ModelConfig& cfg);
  at::Tensor forward(const at::Tensor& input_ids, const ForwardContext& ctx);
  // lm_head weight [vocab, hidden] (the embedding when tied).
  at::Tensor head_weight() const;
  const ModelConfig& config() const { return cfg_; }
  // Parameters AdamW must not decay (by checkpoint name): A_log, dt_bias, r_bias,
  // norm weights and biases, i.e. Raven's _no_weight_decay set and every 1-D tensor.
  static bool no_weight_decay(const std::string& name, const at::Tensor& p);
  // Re-draws every parameter as Raven/FLA initialise them (torch's global RNG).
  void reset_parameters();

 private:
  ModelConfig cfg_;
  std::shared_ptr<detail::RavenModelImpl> model_;
  torch::nn::Linear lm_head_{nullptr};
};
TORCH_MODULE(RavenForCausalLM);

// Model FLOPs per token of one training step (forward + backward, 3x forward),
// counting the matmuls, the GSA state updates and causal softmax attention over
// `seq_len` tokens (window-limited). What MFU divides by.
double train_flops_per_token(const ModelConfig& cfg, int64_t seq_len);
int64_t count_parameters(torch::nn::Module& m);

}  // namespace ravensp::model
