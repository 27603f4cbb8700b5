// The measured workloads at the model config's shapes: the SP GSA op, ring
// attention and a two-layer hybrid block, each forward+backward on this rank's shard.
#include "workloads.h"

#include <ATen/autocast_mode.h>

#include <cmath>

#include "ravensp/model.h"
#include "ravensp/ops.h"
#include "ravensp/ring_attention.h"
#include "ravensp/sp.h"

namespace ravensp::bench {
namespace {

at::TensorOptions opts(const Context& c) { return at::TensorOptions().dtype(c.dtype).device(c.device); }

at::Tensor leaf(const at::Tensor& t) { return t.detach().requires_grad_(true); }

sp::Layout layout(const Context& c) {
  return c.opts.layout == "zigzag" ? sp::Layout::kZigzag : sp::Layout::kContiguous;
}

Workload sp_gsa(const Context& c, int64_t T, sp::StateExchange ex) {
  const auto& m = c.opts.train.model;
  const int64_t L = T / c.world, H = m.num_heads, K = m.head_k_dim(), V = m.head_v_dim(),
                M = m.slots(), C = m.chunk_size;
  torch::manual_seed(1000 + c.rank);
  auto o = opts(c);
  // Raven-like inputs: slot scores on the simplex, small negative log decays.
  auto q = leaf(at::randn({1, L, H, K}, o) * 0.5), k = leaf(at::randn({1, L, H, K}, o) * 0.5);
  auto v = leaf(at::randn({1, L, H, V}, o));
  auto s = leaf(at::softmax(at::randn({1, L, H, M}, o.dtype(at::kFloat)), -1).to(c.dtype));
  auto g = leaf((at::log_sigmoid(at::randn({1, L, H, M}, o.dtype(at::kFloat)) + 4.0) / 16.0).to(c.dtype));
  auto go = at::randn({1, L, H, V}, o);
  const double scale = 1.0 / std::sqrt(double(K));
  const int64_t group = c.group;
  const sp::Layout lay = layout(c);
  Workload w;
  w.step = [=] {
    auto out = sp::sp_gsa(q, k, v, s, g, scale, std::nullopt, std::nullopt, std::nullopt, group, lay, ex, C);
    torch::autograd::backward({out}, {go});
  };
  w.local = [=] {
    auto out = std::get<0>(ops::gsa_chunk(q, k, v, s, g, scale, std::nullopt, std::nullopt, std::nullopt, C));
    torch::autograd::backward({out}, {go});
  };
  w.flops = kGsaFwdBwdFactor * gsa_flops_fwd(1, H, K, V, M, L, C);
  w.comm_method = "baseline_difference";
  return w;
}

Workload ring(const Context& c, int64_t T) {
  const auto& m = c.opts.train.model;
  const int64_t L = T / c.world, H = m.attn_num_heads, Hkv = m.attn_kv_heads(), D = m.hidden_size / H;
  torch::manual_seed(2000 + c.rank);
  auto o = opts(c);
  auto q = leaf(at::randn({1, L, H, D}, o)), k = leaf(at::randn({1, L, Hkv, D}, o));
  auto v = leaf(at::randn({1, L, Hkv, D}, o)), go = at::randn({1, L, H, D}, o);
  const double scale = 1.0 / std::sqrt(double(D));
  const int64_t group = c.group;
  const sp::Layout lay = layout(c);
  // The slowest rank's key pairs in units of a non-causal L x L tile: zigzag
  // balances causal work at L*T/2 pairs (P/2 tiles); contiguous leaves the last
  // rank L*(T - L/2) pairs (P - 1/2 tiles). The local baseline runs one such tile
  // through the same op without a group (same kernels) and scales by this factor.
  const double tiles = lay == sp::Layout::kZigzag ? c.world / 2.0 : c.world - 0.5;
  Workload w;
  w.step = [=] {
    auto out = sp::ring_attention(q, k, v, scale, true, 0, std::nullopt, group, lay);
    torch::autograd::backward({out}, {go});
  };
  w.local = [=] {
    auto out = sp::ring_attention(q, k, v, scale, false, 0, std::nullopt, sp::kNoGroup, sp::Layout::kContiguous);
    torch::autograd::backward({out}, {go});
  };
  w.flops = kAttnFwdBwdFactor * attention_flops_fwd(1, T, T, H, D, true) / c.world;
  w.local_scale = tiles;
  w.comm_method = "baseline_difference";
  return w;
}

// bf16 autocast for the block's forward, as ravensp-train runs it.
class Autocast {
 public:
  Autocast(bool on, at::DeviceType dev) : on_(on), dev_(dev) {
    if (!on_) return;
    at::autocast::set_autocast_enabled(dev_, true);
    at::autocast::set_autocast_dtype(dev_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(dev_, false);
  }

 private:
  bool on_;
  at::DeviceType dev_;
};

Workload hybrid_block(const Context& c, int64_t T) {
  // One Raven layer and one softmax attention layer, each with its MLP: the
  // model config's shapes with two layers and a small vocabulary.
  model::ModelConfig cfg = c.opts.train.model;
  cfg.num_layers = 2;
  cfg.attn_layers = {1};
  cfg.vocab_size = 256;
  const int64_t L = T / c.world;
  torch::manual_seed(3000);
  model::RavenForCausalLM net(cfg);
  const bool bf16 = c.dtype == at::kBFloat16;
  net->to(bf16 ? at::kFloat : c.dtype);
  net->to(c.device);
  net->train();
  model::ForwardContext ctx;
  ctx.positions = c.world > 1 ? sp::global_positions(layout(c), c.rank, c.world, L, c.device)
                              : at::arange(T, at::TensorOptions().dtype(at::kLong).device(c.device));
  ctx.sp_group = c.world > 1 ? c.group : sp::kNoGroup;
  ctx.sp_size = c.world;
  ctx.layout = layout(c);
  torch::manual_seed(3001 + c.rank);
  auto ids = at::randint(0, cfg.vocab_size, {1, L}, at::TensorOptions().dtype(at::kLong).device(c.device));
  auto go = at::randn({1, L, cfg.hidden_size}, at::TensorOptions().device(c.device));
  const auto dev = c.device.type();
  Workload w;
  w.step = [=]() mutable {
    at::Tensor h;
    {
      Autocast scope(bf16, dev);
      h = net->forward(ids, ctx);
    }
    torch::autograd::backward({h}, {go.to(h.dtype())});
    for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
  };
  model::ModelConfig no_head = cfg;
  no_head.vocab_size = 0;  // the block has no LM head
  w.flops = model::train_flops_per_token(no_head, T) * L;
  w.comm_method = "host_time_in_collectives";
  return w;
}

}  // namespace

Workload make_workload(const Context& c, const std::string& what, int64_t T) {
  if (what == "sp_gsa_lasp2") return sp_gsa(c, T, sp::StateExchange::kLasp2);
  if (what == "sp_gsa_lasp1") return sp_gsa(c, T, sp::StateExchange::kLasp1);
  if (what == "ring_attention") return ring(c, T);
  if (what == "hybrid_block") return hybrid_block(c, T);
  RAVENSP_CHECK(false, "make_workload: no workload named ", what);
}

}  // namespace ravensp::bench
