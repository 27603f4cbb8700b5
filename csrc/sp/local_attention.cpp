// Tile kernels of ring attention. The fused path calls ATen's cuDNN or flash SDPA
// (they return the LSE the merge needs, and their backward accepts the final
// output and LSE, which is exactly the recompute a ring backward wants). The math
// path computes in the accumulate dtype in row chunks with masks built per tile
// from global positions, so no mask is ever larger than one chunk's reach.
#include "local_attention.h"

#include <atomic>
#include <cstdlib>
#include <limits>
#include <string>

#include "ravensp/check.h"

namespace ravensp::sp::ring {
namespace {

constexpr int64_t kMathRows = 256;  // query rows per math chunk: bounds the logits buffer
constexpr int64_t kMinFusedRows = 16;  // smaller tiles take the math path

// The LSE rank cuDNN's forward returned ([B, H, n] or [B, H, n, 1]), so the backward
// hands the final LSE back in the same shape.
std::atomic<int64_t> g_cudnn_lse_dim{3};

// [B, n, Hkv*G, D] -> [B, Hkv, G, n, D]: query head h uses KV head h / G (FLA's order).
at::Tensor q_heads(const at::Tensor& x, int64_t hkv, at::ScalarType dt) {
  const int64_t B = x.size(0), n = x.size(1), H = x.size(2), D = x.size(3);
  return x.to(dt).reshape({B, n, hkv, H / hkv, D}).permute({0, 2, 3, 1, 4});
}
at::Tensor kv_heads(const at::Tensor& x, at::ScalarType dt) {  // [B, n, Hkv, D] -> [B, Hkv, 1, n, D]
  return x.to(dt).permute({0, 2, 1, 3}).unsqueeze(2);
}
at::Tensor from_heads(const at::Tensor& x) {  // [B, Hkv, G, n, D] -> [B, n, Hkv*G, D]
  return x.permute({0, 3, 1, 2, 4}).flatten(2, 3);
}

// scale * q k^T for rows [r0, r0+rows) with invisible pairs at -inf.
at::Tensor scores(const Config& c, const Tile& t, const at::Tensor& qh, const at::Tensor& kh,
                  int64_t r0, int64_t rows) {
  at::Tensor s = at::matmul(qh.narrow(3, r0, rows), kh.transpose(-1, -2)).mul_(c.scale);
  if (t.kind != TileKind::kFull)
    s.masked_fill_(tile_mask(c, t, r0, rows, qh.device()).logical_not(),
                   -std::numeric_limits<double>::infinity());
  return s;
}

// Fused kernels get packed [B, n, H, D] tiles (a row slice of a B > 1 shard is not):
// cuDNN's stride support varies by version, a copy of one tile is cheap beside it.
at::Tensor expand_kv(const at::Tensor& x, int64_t groups) {
  return groups == 1 ? x.contiguous() : x.repeat_interleave(groups, 2);
}
at::Tensor sum_groups(const at::Tensor& x, int64_t hkv) {  // [B, n, H, D] -> [B, n, Hkv, D]
  return x.reshape({x.size(0), x.size(1), hkv, x.size(2) / hkv, x.size(3)}).sum(3);
}

std::tuple<at::Tensor, at::Tensor> math_forward(const Config& c, const Tile& t,
                                                const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v) {
  const auto dt = c.acc_dtype;
  at::Tensor qh = q_heads(q, c.Hkv, dt), kh = kv_heads(k, dt), vh = kv_heads(v, dt);
  at::Tensor o = at::empty({c.B, t.nq, c.H, c.D}, q.options().dtype(dt));
  at::Tensor lse = at::empty({c.B, c.H, t.nq}, q.options().dtype(dt));
  for (int64_t r0 = 0; r0 < t.nq; r0 += kMathRows) {
    const int64_t rows = std::min(kMathRows, t.nq - r0);
    at::Tensor s = scores(c, t, qh, kh, r0, rows);
    at::Tensor m = std::get<0>(s.max(-1, true));
    at::Tensor shift = at::where(at::isinf(m), at::zeros_like(m), m);  // empty rows
    at::Tensor p = (s - shift).exp_();
    at::Tensor l = p.sum(-1, true);
    at::Tensor inv = at::where(l > 0, l.reciprocal(), at::zeros_like(l));
    o.narrow(1, r0, rows).copy_(from_heads(at::matmul(p, vh).mul_(inv)));
    lse.narrow(2, r0, rows).copy_((shift + l.log()).squeeze(-1).flatten(1, 2));
  }
  return {o, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> math_backward(
    const Config& c, const Tile& t, const at::Tensor& grad_o, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& lse, const at::Tensor& delta) {
  const auto dt = c.acc_dtype;
  const int64_t G = c.H / c.Hkv;
  at::Tensor qh = q_heads(q, c.Hkv, dt), kh = kv_heads(k, dt), vh = kv_heads(v, dt);
  at::Tensor doh = q_heads(grad_o, c.Hkv, dt);
  at::Tensor lse_h = lse.to(dt).reshape({c.B, c.Hkv, G, t.nq, 1});
  at::Tensor delta_h = delta.to(dt).reshape({c.B, c.Hkv, G, t.nq, 1});
  at::Tensor dq = at::empty({c.B, t.nq, c.H, c.D}, q.options().dtype(dt));
  at::Tensor dk = at::zeros({c.B, c.Hkv, t.nk, c.D}, q.options().dtype(dt));
  at::Tensor dv = at::zeros({c.B, c.Hkv, t.nk, c.D}, q.options().dtype(dt));
  for (int64_t r0 = 0; r0 < t.nq; r0 += kMathRows) {
    const int64_t rows = std::min(kMathRows, t.nq - r0);
    // P from the final LSE: the probabilities of the whole softmax, restricted to this tile.
    at::Tensor p = (scores(c, t, qh, kh, r0, rows) - lse_h.narrow(3, r0, rows)).exp_();
    at::Tensor dob = doh.narrow(3, r0, rows);
    dv.add_(at::matmul(p.transpose(-1, -2), dob).sum(2));
    at::Tensor ds = p.mul_(at::matmul(dob, vh.transpose(-1, -2)) - delta_h.narrow(3, r0, rows));
    dq.narrow(1, r0, rows).copy_(from_heads(at::matmul(ds, kh).mul_(c.scale)));
    dk.add_(at::matmul(ds.transpose(-1, -2), qh.narrow(3, r0, rows)).sum(2).mul_(c.scale));
  }
  return {dq, dk.permute({0, 2, 1, 3}), dv.permute({0, 2, 1, 3})};
}

at::Tensor zero_long(const at::Tensor& like) {
  return at::zeros({}, like.options().dtype(at::kLong));
}

std::tuple<at::Tensor, at::Tensor> fused_forward(const Config& c, const Tile& t, Kernel kern,
                                                 const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v) {
  const int64_t G = c.H / c.Hkv;
  const bool causal = t.kind == TileKind::kCausal;
  at::Tensor qt = q.contiguous().transpose(1, 2), kt = expand_kv(k, G).transpose(1, 2),
             vt = expand_kv(v, G).transpose(1, 2);
  at::Tensor o, lse;
  if (kern == Kernel::kCudnn) {
    auto r = at::_scaled_dot_product_cudnn_attention(qt, kt, vt, std::nullopt, true, 0.0, causal,
                                                     false, c.scale);
    o = std::get<0>(r);
    lse = std::get<1>(r);
    g_cudnn_lse_dim.store(lse.dim());
  } else {
    auto r = at::_scaled_dot_product_flash_attention(qt, kt, vt, 0.0, causal, false, c.scale);
    o = std::get<0>(r);
    lse = std::get<1>(r);
  }
  return {o.transpose(1, 2).to(c.acc_dtype), lse.reshape({c.B, c.H, t.nq}).to(c.acc_dtype)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_backward(
    const Config& c, const Tile& t, Kernel kern, const at::Tensor& grad_o, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& o, const at::Tensor& lse) {
  const int64_t G = c.H / c.Hkv;
  const bool causal = t.kind == TileKind::kCausal;
  at::Tensor qt = q.contiguous().transpose(1, 2), kt = expand_kv(k, G).transpose(1, 2),
             vt = expand_kv(v, G).transpose(1, 2);
  at::Tensor dot = grad_o.contiguous().transpose(1, 2), ot = o.contiguous().transpose(1, 2);
  at::Tensor lse32 = lse.to(at::kFloat).contiguous();
  std::tuple<at::Tensor, at::Tensor, at::Tensor> r;
  if (kern == Kernel::kCudnn) {
    if (g_cudnn_lse_dim.load() == 4) lse32 = lse32.unsqueeze(-1);
    r = at::_scaled_dot_product_cudnn_attention_backward(
        dot, qt, kt, vt, ot, lse32, zero_long(q), zero_long(q), at::Tensor(), at::Tensor(),
        at::Tensor(), t.nq, t.nk, 0.0, causal, c.scale);
  } else {
    r = at::_scaled_dot_product_flash_attention_backward(dot, qt, kt, vt, ot, lse32, at::Tensor(),
                                                         at::Tensor(), t.nq, t.nk, 0.0, causal,
                                                         zero_long(q), zero_long(q), c.scale);
  }
  const auto dt = c.acc_dtype;
  return {std::get<0>(r).transpose(1, 2).to(dt), sum_groups(std::get<1>(r).transpose(1, 2).to(dt), c.Hkv),
          sum_groups(std::get<2>(r).transpose(1, 2).to(dt), c.Hkv)};
}

}  // namespace

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::kFlash: return "flash";
    case Kernel::kCudnn: return "cudnn";
    default: return "math";
  }
}

Kernel tile_kernel(const Config& c, const Tile& t, const at::Tensor& q) {
  const auto dt = q.scalar_type();
  // Tiny tiles (documents of a few tokens) run on math: cuDNN rejects 1 x 1 and a
  // fused launch buys nothing at that size.
  if (!q.is_cuda() || t.kind == TileKind::kMasked || (dt != at::kHalf && dt != at::kBFloat16) ||
      c.D % 8 != 0 || c.D > 256 || t.nq < kMinFusedRows || t.nk < kMinFusedRows)
    return Kernel::kMath;
  const char* env = std::getenv(kKernelEnv);
  const std::string want = env && *env ? env : "cudnn";
  if (want == "math") return Kernel::kMath;
  if (want == "flash") return Kernel::kFlash;
  RAVENSP_CHECK(want == "cudnn", kKernelEnv, "='", want,
                "' is not a ring attention kernel; supported: cudnn, flash, math");
  return c.D <= 128 ? Kernel::kCudnn : Kernel::kFlash;  // cuDNN's SDPA stops at head dim 128
}

std::tuple<at::Tensor, at::Tensor> tile_forward(const Config& c, const Tile& t,
                                                const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v) {
  const Kernel kern = tile_kernel(c, t, q);
  return kern == Kernel::kMath ? math_forward(c, t, q, k, v) : fused_forward(c, t, kern, q, k, v);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> tile_backward(
    const Config& c, const Tile& t, const at::Tensor& grad_o, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& v, const at::Tensor& o, const at::Tensor& lse,
    const at::Tensor& delta) {
  const Kernel kern = tile_kernel(c, t, q);
  if (kern == Kernel::kMath) return math_backward(c, t, grad_o, q, k, v, lse, delta);
  return fused_backward(c, t, kern, grad_o, q, k, v, o, lse);
}

}  // namespace ravensp::sp::ring
