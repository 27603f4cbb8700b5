// The analytic scaling model: NCCL cost curves from DEVICE.md's ceilings, the
// per-layer exchange volumes of LASP-2, LASP-1 and ring passing, compute costs
// calibrated on one H100, and the step-time prediction (docs/scaling_model.md).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "ravensp/bench.h"

namespace ravensp::bench::scaling {

BandwidthCurve::BandwidthCurve(std::vector<CurvePoint> points) : points_(std::move(points)) {
  RAVENSP_CHECK(!points_.empty(), "BandwidthCurve needs at least one point");
  for (size_t i = 0; i < points_.size(); ++i) {
    RAVENSP_CHECK(points_[i].bytes > 0 && points_[i].gbps > 0, "BandwidthCurve point ", i,
                  " must be positive, got bytes=", points_[i].bytes, " gbps=", points_[i].gbps);
    RAVENSP_CHECK(i == 0 || points_[i].bytes > points_[i - 1].bytes,
                  "BandwidthCurve points must ascend in bytes; point ", i, " has ", points_[i].bytes,
                  " after ", points_[i - 1].bytes);
  }
}

double BandwidthCurve::gbps(double bytes) const {
  const auto& p = points_;
  if (bytes <= p.front().bytes) return p.front().gbps * bytes / p.front().bytes;  // constant time
  if (bytes >= p.back().bytes) return p.back().gbps;
  size_t i = 1;
  while (p[i].bytes < bytes) ++i;
  // Linear in log(bytes): bandwidth ramps smoothly between the measured sizes.
  const double f = std::log(bytes / p[i - 1].bytes) / std::log(p[i].bytes / p[i - 1].bytes);
  return p[i - 1].gbps + f * (p[i].gbps - p[i - 1].gbps);
}

double BandwidthCurve::step_seconds(double bytes) const {
  const double floor_s = points_.front().bytes / (points_.front().gbps * 1e9);
  if (bytes <= 0) return 0;
  return std::max(floor_s, bytes / (gbps(bytes) * 1e9));
}

BandwidthCurve device_md_allgather() {
  // 64 KiB in 38 us is 65536 / 38e-6 = 1.72 GB/s: the latency floor.
  return BandwidthCurve({{65536.0, 65536.0 / 38e-6 / 1e9},
                         {1048576.0, 28.0},
                         {16777216.0, 184.0},
                         {268435456.0, 256.0}});
}

double allgather_seconds(const Cluster& c, double bytes_per_rank, int P) {
  RAVENSP_CHECK(P >= 1, "allgather_seconds: P must be >= 1, got ", P);
  if (P == 1 || bytes_per_rank <= 0) return 0;
  double step = c.allgather.step_seconds(bytes_per_rank);
  if (P > c.gpus_per_node) step = std::max(step, bytes_per_rank / (c.internode_gbps * 1e9));
  return (P - 1) * step;
}

double p2p_seconds(const Cluster& c, double bytes, bool crosses_node) {
  if (bytes <= 0) return 0;
  // Same latency floor as the all-gather step; bandwidth scaled to the p2p ceiling.
  const double scale = c.p2p_gbps / c.allgather_peak_gbps;
  const double floor_s = c.allgather.step_seconds(c.allgather.points().front().bytes);
  double bw = c.allgather.gbps(bytes) * scale;
  if (crosses_node) bw = std::min(bw, c.internode_gbps);
  return std::max(floor_s, bytes / (bw * 1e9));
}

double allreduce_seconds(const Cluster& c, double bytes, int P) {
  // Reduce-scatter then all-gather of pieces bytes/P: 2 (P-1) ring steps.
  if (P == 1 || bytes <= 0) return 0;
  return 2.0 * allgather_seconds(c, bytes / P, P);
}

double lasp2_state_bytes(const Shape& s) {
  const double per_seg = double(s.batch) * s.heads *
                         (double(s.head_k) * s.slots + double(s.slots) * s.head_v + s.slots);
  return 4.0 * s.segments_per_rank * per_seg;
}

namespace {

double interp(const std::vector<double>& x, const std::vector<double>& y, double at) {
  RAVENSP_CHECK(x.size() == y.size() && x.size() >= 2, "calibration needs >= 2 matching points, got ",
                x.size(), " and ", y.size());
  if (at <= x.front()) return y.front() * at / x.front();
  size_t i = 1;
  while (i + 1 < x.size() && x[i] < at) ++i;
  return y[i - 1] + (y[i] - y[i - 1]) * (at - x[i - 1]) / (x[i] - x[i - 1]);
}

// One more forward per layer under activation checkpointing: a third of a GSA
// fwd+bwd (bwd = 2x fwd), 1/3.5 of attention's (bwd = 2.5x fwd).
double raven_recompute(const Shape& s) { return s.recompute ? 1.0 + 1.0 / kGsaFwdBwdFactor : 1.0; }
double attn_recompute(const Shape& s) { return s.recompute ? 1.0 + 1.0 / kAttnFwdBwdFactor : 1.0; }

}  // namespace

double raven_layer_ms(const Calibration& c, const Shape& s, double tokens, bool sp_path) {
  double ms = interp(c.raven_tokens, sp_path ? c.raven_ms_sp : c.raven_ms_local, tokens);
  if (s.slots == 256) ms += c.m256_extra_us_per_token * tokens * 1e-3;
  else RAVENSP_CHECK(s.slots == 64, "the calibration covers slots 64 and 256, got ", s.slots);
  return ms;
}

double attention_layer_s(const Calibration& c, const Shape& s, double total_tokens, int P) {
  const double T = total_tokens;
  const double fl = kAttnFwdBwdFactor * 4.0 * s.batch * T * T * s.attn_heads * s.attn_head_dim / 2.0;
  return fl / P / (c.attn_tflops * 1e12);
}

double rest_s_per_token(const Calibration& c, const Shape&) {
  RAVENSP_CHECK(c.train_tokens.size() == c.train_step_s.size() && !c.train_tokens.empty(),
                "calibration train points must match, got ", c.train_tokens.size(), " and ",
                c.train_step_s.size());
  // Fitted on the model the steps were measured on (hybrid-340M, M=64), whatever
  // shape is being predicted: fitting on the predicted shape let the rest absorb
  // that shape's own differences (M=256's extra Raven cost, a Raven-only layer mix).
  // The Raven layer is the one those steps ran, not today's: with today's faster
  // layer the rest would absorb the difference and a kernel speed-up would never
  // reach the predicted step.
  const Shape s{};
  const int raven = s.layers - s.attn_layers;
  double num = 0, den = 0;
  for (size_t i = 0; i < c.train_tokens.size(); ++i) {
    const double T = c.train_tokens[i];
    const double known = raven * interp(c.raven_tokens, c.train_raven_ms_local, T) * 1e-3 * raven_recompute(s) +
                         s.attn_layers * attention_layer_s(c, s, T, 1) * attn_recompute(s);
    num += (c.train_step_s[i] - known) * T;  // fit r in step = known + r * T
    den += T * T;
  }
  return std::max(0.0, num / den);
}

double exchange_sync_s(const Calibration& c, const Cluster& cl) {
  RAVENSP_CHECK(!c.lasp2_exposed_ms_2gpu.empty(), "calibration: lasp2_exposed_ms_2gpu is empty");
  std::vector<double> v = c.lasp2_exposed_ms_2gpu;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  // Two exchanges per layer fwd+bwd in the benchmark (no recompute).
  const double per_exchange = v[v.size() / 2] * 1e-3 / 2;
  return std::max(0.0, per_exchange - allgather_seconds(cl, lasp2_state_bytes(Shape{}), 2));
}

double exchange_seconds(const Cluster& cl, const Shape& s, Scheme scheme, int P) {
  RAVENSP_CHECK(scheme != Scheme::kRing, "exchange_seconds: ring passing has no single exchange");
  RAVENSP_CHECK(P >= 1, "exchange_seconds: P must be >= 1, got ", P);
  if (scheme != Scheme::kLasp1) return allgather_seconds(cl, lasp2_state_bytes(s), P);
  // Serial hop chain, one segment's state per hop, in sequence order: P-1 network
  // hops contiguous; zigzag visits 2P segments, 2(P-1) hops between ranks (the
  // middle pair shares a rank), crossing a node boundary 2(nodes-1) times.
  const Shape one = [&] { Shape x = s; x.segments_per_rank = 1; return x; }();
  const double bytes = lasp2_state_bytes(one);
  const int nodes = (P + cl.gpus_per_node - 1) / cl.gpus_per_node;
  const int hops = s.segments_per_rank == 2 ? 2 * (P - 1) : P - 1;
  const int cross = P > cl.gpus_per_node ? s.segments_per_rank * (nodes - 1) : 0;
  return (hops - cross) * p2p_seconds(cl, bytes, false) + cross * p2p_seconds(cl, bytes, true);
}

const char* scheme_name(Scheme x) {
  switch (x) {
    case Scheme::kLasp2Overlap: return "lasp2_overlap";
    case Scheme::kLasp2: return "lasp2";
    case Scheme::kLasp1: return "lasp1";
    case Scheme::kRing: return "ring";
  }
  return "?";
}

const char* compute_mode_name(ComputeMode m) { return m == ComputeMode::kTarget ? "target" : "today"; }

Prediction predict(const Shape& s, const Calibration& c, const Cluster& cl, Scheme scheme,
                   ComputeMode mode, int gpus, double seq_len) {
  RAVENSP_CHECK(gpus >= 1 && seq_len >= gpus, "predict: need gpus >= 1 and seq_len >= gpus, got ",
                gpus, " and ", seq_len);
  Prediction p{scheme, mode};
  p.gpus = gpus;
  p.seq_len = seq_len;
  const double L = seq_len / gpus;
  p.tokens_per_gpu = L;
  const int raven = s.layers - s.attn_layers;
  const double layer_s = raven_layer_ms(c, s, L, mode == ComputeMode::kToday && gpus > 1) * 1e-3;
  const double attn_layer = attention_layer_s(c, s, seq_len, gpus);
  p.raven_s = raven * layer_s * raven_recompute(s);
  p.attn_s = s.attn_layers * attn_layer * attn_recompute(s);
  p.rest_s = rest_s_per_token(c, s) * L;
  const double passes_fwd = s.recompute ? 2 : 1;  // forward exchanges per step (recompute repeats it)
  const double pass_fwd_s = layer_s / kGsaFwdBwdFactor, pass_bwd_s = layer_s - pass_fwd_s;
  const bool multi_node = gpus > cl.gpus_per_node;

  double raven_exchange = 0, raven_exposed = 0;
  if (gpus > 1 && scheme != Scheme::kRing) {
    // Measured on two GPUs, paid at every exchange whatever the bandwidth.
    const double sync = (passes_fwd + 1) * exchange_sync_s(c, cl);
    raven_exchange += sync;
    raven_exposed += sync;
  }
  if (gpus > 1) {
    if (scheme == Scheme::kLasp2 || scheme == Scheme::kLasp2Overlap) {
      const double t = exchange_seconds(cl, s, scheme, gpus);
      raven_exchange += (passes_fwd + 1) * t;
      raven_exposed += scheme == Scheme::kLasp2
                          ? (passes_fwd + 1) * t
                          : passes_fwd * std::max(0.0, t - c.overlap_fraction * pass_fwd_s) +
                                std::max(0.0, t - c.overlap_fraction * pass_bwd_s);
    } else if (scheme == Scheme::kLasp1) {
      const double chain = exchange_seconds(cl, s, scheme, gpus);
      raven_exchange += (passes_fwd + 1) * chain;
      raven_exposed += (passes_fwd + 1) * chain;
    } else {
      // Ring passing of q-side inputs for GSA: k, v, s, g blocks in bf16 travel P-1
      // hops each pass (backward: the blocks and their gradients), overlapped with the pass.
      const double block = 2.0 * L * s.batch * s.heads * (s.head_k + s.head_v + 2.0 * s.slots);
      const double hop = p2p_seconds(cl, block, multi_node);
      const double fwd = (gpus - 1) * hop, bwd = 2 * fwd;
      raven_exchange = passes_fwd * fwd + bwd;
      raven_exposed = passes_fwd * std::max(0.0, fwd - pass_fwd_s) + std::max(0.0, bwd - pass_bwd_s);
    }
  }
  p.exchange_s = raven * raven_exchange;
  p.exposed_s = raven * raven_exposed;
  if (gpus > 1 && s.attn_layers > 0) {
    // Ring attention (what ravensp's softmax layers run under every scheme): K/V
    // blocks of the kv heads, P-1 hops per pass, overlapped with that pass.
    const double kv = 2.0 * 2.0 * L * s.batch * s.attn_kv_heads * s.attn_head_dim;
    const double fwd = (gpus - 1) * p2p_seconds(cl, kv, multi_node), bwd = 2 * fwd;
    const double a_fwd = attn_layer / kAttnFwdBwdFactor, a_bwd = attn_layer - a_fwd;
    p.exchange_s += s.attn_layers * (passes_fwd * fwd + bwd);
    p.exposed_s += s.attn_layers * (passes_fwd * std::max(0.0, fwd - a_fwd) + std::max(0.0, bwd - a_bwd));
  }
  p.grad_allreduce_s = allreduce_seconds(cl, 4.0 * s.params, gpus);
  const double compute = p.raven_s + p.attn_s + p.rest_s;
  p.step_s = compute + p.exposed_s + p.grad_allreduce_s;
  p.tokens_per_s_per_gpu = L / p.step_s;
  p.efficiency = compute / p.step_s;
  return p;
}

std::string Prediction::to_json() const {
  std::ostringstream os;
  os.precision(6);
  os << "{\"scheme\": \"" << scheme_name(scheme) << "\", \"compute\": \"" << compute_mode_name(mode)
     << "\", \"gpus\": " << gpus << ", \"seq_len\": " << int64_t(seq_len)
     << ", \"tokens_per_gpu\": " << int64_t(tokens_per_gpu) << ", \"raven_s\": " << raven_s
     << ", \"attn_s\": " << attn_s << ", \"rest_s\": " << rest_s << ", \"exchange_s\": " << exchange_s
     << ", \"exposed_s\": " << exposed_s << ", \"grad_allreduce_s\": " << grad_allreduce_s
     << ", \"step_s\": " << step_s << ", \"tokens_per_s_per_gpu\": " << tokens_per_s_per_gpu
     << ", \"efficiency\": " << efficiency << "}";
  return os.str();
}

}  // namespace ravensp::bench::scaling
