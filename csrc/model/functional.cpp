// The stateless pieces of the Raven layer, each a line-for-line port of its
// Python twin in python/ravensp/nn/ (norms.py, gumbel.py, router.py, rotary.py)
// using the same ATen ops in the same order, so results agree bit for bit.
#include <cmath>

#include "model/layers.h"

namespace ravensp::model {

at::ScalarType compute_dtype(at::ScalarType st) { return at::promote_types(st, at::kFloat); }

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  auto xc = x.to(compute_dtype(x.scalar_type()));
  auto y = xc * at::rsqrt(xc.square().mean(-1, /*keepdim=*/true) + eps);
  if (weight.defined()) y = y * weight.to(y.scalar_type());
  return y.to(x.scalar_type());
}

RMSNormImpl::RMSNormImpl(int64_t dim, bool affine, double eps) : eps_(eps) {
  if (affine) weight = register_parameter("weight", torch::ones({dim}));
}

GatedRMSNormImpl::GatedRMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor GatedRMSNormImpl::forward(const at::Tensor& x, const at::Tensor& gate) {
  auto ct = compute_dtype(x.scalar_type());
  auto xc = x.to(ct);
  auto y = xc * at::rsqrt(xc.square().mean(-1, true) + eps_);
  y = y * weight.to(ct);
  return (y * at::silu(gate.to(ct))).to(x.scalar_type());
}

// ---- Gumbel noise: gumbel.py -------------------------------------------------
namespace {

constexpr int64_t kMask32 = 0xFFFFFFFFLL;
constexpr int64_t kGolden32 = 0x9E3779B1LL;

// x * c mod 2^32 for x in [0, 2^32); 16-bit halves of c keep int64 products < 2^49.
at::Tensor mul32(const at::Tensor& x, int64_t c) {
  auto lo = x * (c & 0xFFFF);
  auto hi = at::bitwise_left_shift(at::bitwise_and(x * (c >> 16), 0xFFFF), 16);
  return at::bitwise_and(lo + hi, kMask32);
}

at::Tensor fmix32(at::Tensor x) {
  x = at::bitwise_xor(x, at::bitwise_right_shift(x, 16));
  x = mul32(x, 0x85EBCA6BLL);
  x = at::bitwise_xor(x, at::bitwise_right_shift(x, 13));
  x = mul32(x, 0xC2B2AE35LL);
  return at::bitwise_xor(x, at::bitwise_right_shift(x, 16));
}

at::Tensor absorb(at::Tensor h, const at::Tensor& word) {
  at::Tensor halves[2] = {at::bitwise_and(word, kMask32),
                          at::bitwise_and(at::bitwise_right_shift(word, 32), kMask32)};
  for (const auto& half : halves) h = fmix32(at::bitwise_xor(h, mul32(half, kGolden32)));
  return h;
}

}  // namespace

at::Tensor gumbel_noise(int64_t seed, int64_t step, int64_t layer, const at::Tensor& rows,
                        const at::Tensor& positions, int64_t num_heads, int64_t num_slots,
                        at::ScalarType dtype) {
  RAVENSP_CHECK(rows.sizes() == positions.sizes(), "gumbel_noise: rows shape ",
                shape_str(rows.sizes()), " != positions shape ", shape_str(positions.sizes()));
  auto dev = positions.device();
  auto i64 = at::TensorOptions().dtype(at::kLong).device(dev);
  auto h = at::zeros({}, i64);
  for (int64_t word : {seed, step, layer}) h = absorb(h, at::scalar_tensor(word, i64));
  h = absorb(absorb(h, rows.to(at::kLong)), positions.to(at::kLong));
  h = absorb(h.unsqueeze(-1), at::arange(num_heads, i64));
  h = absorb(h.unsqueeze(-1), at::arange(num_slots, i64));
  at::Tensor u;
  if (dtype == at::kDouble) {
    auto h1 = fmix32(at::bitwise_xor(h, 0x68E31DA4LL));
    auto h2 = fmix32(at::bitwise_xor(h, 0xB5297A4DLL));
    auto bits = at::bitwise_or(at::bitwise_left_shift(at::bitwise_right_shift(h1, 12), 32), h2);
    u = (bits.to(at::kDouble) + 0.5) * std::ldexp(1.0, -52);
  } else {
    auto bits = at::bitwise_right_shift(fmix32(at::bitwise_xor(h, 0x68E31DA4LL)), 9);
    u = (bits.to(at::kFloat) + 0.5) * std::ldexp(1.0, -23);
  }
  return (-at::log(-at::log(u))).to(dtype);
}

// ---- router: router.py ---------------------------------------------------------
at::Tensor route(const at::Tensor& logits, int64_t topk, const std::string& score,
                 const at::Tensor& bias) {
  at::Tensor scores;
  if (score == "sigmoid") {
    scores = at::sigmoid(logits);
  } else {
    RAVENSP_CHECK(score == "softmax", "router_score=", score,
                  " is not supported; supported: sigmoid, softmax");
    scores = at::softmax(logits, -1);
  }
  auto select = bias.defined()
                    ? scores + bias.to(at::promote_types(bias.scalar_type(), at::kFloat))
                    : scores;
  auto idx = std::get<1>(select.topk(topk, -1));
  auto weights = scores.gather(-1, idx);
  if (score == "sigmoid") weights = weights / (weights.sum(-1, true) + 1e-9);
  return at::zeros_like(logits).scatter(-1, idx, weights.to(logits.scalar_type()));
}

// ---- rotary: rotary.py ---------------------------------------------------------
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, double theta) {
  const int64_t dim = x.size(-1);
  RAVENSP_CHECK(dim % 2 == 0, "apply_rope: head dim must be even, got ", dim);
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(x.device());
  auto inv_freq = 1.0 / at::pow(theta, at::arange(0, dim, 2, f32) / static_cast<double>(dim));
  auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;  // [L, D/2]
  auto ct = compute_dtype(x.scalar_type());
  auto angles = freqs.to(ct);
  // cos/sin rounded to x's dtype first, then the product runs wider (FLA's order).
  auto cos = angles.cos().to(x.scalar_type()).to(ct).unsqueeze(-2);
  auto sin = angles.sin().to(x.scalar_type()).to(ct).unsqueeze(-2);
  auto halves = x.to(ct).chunk(2, -1);
  auto& x1 = halves[0];
  auto& x2 = halves[1];
  return at::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1).to(x.scalar_type());
}

}  // namespace ravensp::model
