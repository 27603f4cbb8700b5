// ModelConfig's derived sizes, its consistency checks (run before any work) and
// the FLOP count MFU divides by.
#include <algorithm>
#include <sstream>

#include "ravensp/model.h"

namespace ravensp::model {

int64_t ModelConfig::mlp_size() const {
  if (intermediate_size > 0) return intermediate_size;
  const int64_t raw = hidden_size * 4 * 2 / 3;  // FLA: hidden_ratio 4, then 2/3 for SwiGLU
  return 256 * ((raw + 255) / 256);
}

bool ModelConfig::is_attn_layer(int64_t i) const {
  return std::find(attn_layers.begin(), attn_layers.end(), i) != attn_layers.end();
}

std::vector<std::string> ModelConfig::problems() const {
  std::vector<std::string> out;
  auto bad = [&](bool cond, auto&&... parts) {
    if (!cond) return;
    std::ostringstream os;
    (os << ... << parts);
    out.push_back(os.str());
  };
  bad(vocab_size < 1, "model.vocab_size must be >= 1, got ", vocab_size);
  bad(hidden_size < 1, "model.hidden_size must be >= 1, got ", hidden_size);
  bad(num_layers < 1, "model.num_layers must be >= 1, got ", num_layers);
  bad(num_heads < 1, "model.num_heads must be >= 1, got ", num_heads);
  if (!out.empty()) return out;
  const int64_t key_dim = static_cast<int64_t>(hidden_size * expand_k);
  const int64_t value_dim = static_cast<int64_t>(hidden_size * expand_v);
  bad(key_dim % num_heads != 0 || key_dim == 0, "model.num_heads=", num_heads,
      " must divide the key dim hidden_size*expand_k=", key_dim);
  bad(value_dim % num_heads != 0 || value_dim == 0, "model.num_heads=", num_heads,
      " must divide the value dim hidden_size*expand_v=", value_dim);
  bad(kv_heads() < 1 || num_heads % kv_heads() != 0, "model.num_kv_heads=", kv_heads(),
      " must divide model.num_heads=", num_heads);
  if (out.empty()) {
    bad(topk < 1 || topk > slots(), "model.topk=", topk, " must be in [1, num_slots=", slots(), "]");
    bad(use_rope && head_k_dim() % 2 != 0, "model.use_rope needs an even head key dim, got ",
        head_k_dim());
  }
  bad(decay_type != "Mamba2" && decay_type != "GLA", "model.decay_type=", decay_type,
      " is not supported; supported: Mamba2, GLA");
  bad(feature_map != "swish" && feature_map != "relu" && feature_map != "t2r",
      "model.feature_map=", feature_map, " is not supported; supported: swish, relu, t2r");
  bad(router_score != "sigmoid" && router_score != "softmax", "model.router_score=", router_score,
      " is not supported; supported: sigmoid, softmax");
  bad(router_type != "lin" && router_type != "mlp", "model.router_type=", router_type,
      " is not supported; supported: lin, mlp");
  bad(gate_logit_normalizer < 1, "model.gate_logit_normalizer must be >= 1, got ",
      gate_logit_normalizer);
  bad(chunk_size < 1, "model.chunk_size must be >= 1, got ", chunk_size);
  bad(norm_eps <= 0, "model.norm_eps must be > 0, got ", norm_eps);
  for (int64_t i : attn_layers) {
    bad(i < 0 || i >= num_layers, "model.attn_layers holds ", i, ", outside [0, num_layers=",
        num_layers, ")");
  }
  if (!attn_layers.empty()) {
    bad(attn_num_heads < 1 || hidden_size % attn_num_heads != 0, "model.attn_num_heads=",
        attn_num_heads, " must divide model.hidden_size=", hidden_size);
    bad(attn_kv_heads() < 1 || attn_num_heads % attn_kv_heads() != 0, "model.attn_num_kv_heads=",
        attn_kv_heads(), " must divide model.attn_num_heads=", attn_num_heads);
    bad(attn_num_heads >= 1 && (hidden_size / attn_num_heads) % 2 != 0,
        "attention head dim hidden_size/attn_num_heads must be even for RoPE, got ",
        hidden_size / std::max<int64_t>(attn_num_heads, 1));
    bad(attn_window < 0, "model.attn_window must be >= 0 (0 = full causal), got ", attn_window);
  }
  return out;
}

void ModelConfig::validate() const {
  auto p = problems();
  if (p.empty()) return;
  std::ostringstream os;
  os << "invalid model configuration:";
  for (const auto& s : p) os << "\n  " << s;
  throw Error(os.str());
}

double train_flops_per_token(const ModelConfig& cfg, int64_t seq_len) {
  // Matmul FLOPs: 2 per weight per token forward, x3 with backward (embeddings
  // are a lookup and are not counted; the LM head is).
  const double D = cfg.hidden_size, H = cfg.num_heads, K = cfg.head_k_dim(),
               V = cfg.head_v_dim(), M = cfg.slots(), Hkv = cfg.kv_heads();
  const double I = cfg.mlp_size();
  // q, k, v (kv heads), r (router), o projections.
  double raven_w = D * H * K + D * Hkv * K + D * Hkv * V + D * H * M + H * V * D;
  raven_w += cfg.decay_type == "Mamba2" ? D * H : D * Hkv * M;
  if (cfg.router_type == "mlp") raven_w += D * D;
  if (cfg.use_output_gate) raven_w += D * H * V;
  // GSA per token and head: pass 1 updates Hk (K x M) and reads it (K x M); pass 2
  // likewise with M x V: 2 FLOPs per multiply-add.
  const double gsa = H * (2 * 2 * K * M + 2 * 2 * M * V);
  const double Ha = cfg.attn_num_heads, hd = D / std::max(1.0, Ha), Hakv = cfg.attn_kv_heads();
  const double attn_w = D * Ha * hd + 2 * D * Hakv * hd + Ha * hd * D;
  // Causal softmax attention: QK^T and PV over on average T/2 keys (window-limited).
  const double keys = cfg.attn_window > 0 ? std::min<double>(cfg.attn_window, seq_len / 2.0)
                                          : seq_len / 2.0;
  const double attn_core = 2 * 2 * Ha * hd * keys;
  const double mlp_w = 3 * D * I;
  double fwd = 2 * D * cfg.vocab_size;  // LM head
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    fwd += 2 * mlp_w;
    fwd += cfg.is_attn_layer(i) ? 2 * attn_w + attn_core : 2 * raven_w + gsa;
  }
  return 3 * fwd;
}

}  // namespace ravensp::model
