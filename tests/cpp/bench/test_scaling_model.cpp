// The scaling model's arithmetic: exchange volumes, the bandwidth curve's
// interpolation and limits, collective times, the calibration and the predictions'
// bookkeeping (every number recomputed here by hand from the same inputs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "ravensp/bench.h"

namespace sc = ravensp::bench::scaling;

TEST(ScalingModel, Lasp2VolumeAtThe340MShape) {
  sc::Shape s;  // B=1 H=4 K=V=256 M=64, zigzag (2 segments)
  // 2 * 1*4*(256*64 + 64*256 + 64) * 4 bytes = 1,050,624.
  EXPECT_DOUBLE_EQ(sc::lasp2_state_bytes(s), 1050624.0);
  s.segments_per_rank = 1;
  s.slots = 256;
  EXPECT_DOUBLE_EQ(sc::lasp2_state_bytes(s), 4.0 * 4 * (256.0 * 256 * 2 + 256));
}

TEST(ScalingModel, CurveIsExactAtItsPointsAndInterpolatesInLogBytes) {
  sc::BandwidthCurve c({{1024, 1.0}, {4096, 3.0}});
  EXPECT_DOUBLE_EQ(c.gbps(1024), 1.0);
  EXPECT_DOUBLE_EQ(c.gbps(4096), 3.0);
  EXPECT_DOUBLE_EQ(c.gbps(2048), 2.0);      // halfway in log2: 1 + 0.5 * 2
  EXPECT_DOUBLE_EQ(c.gbps(1 << 20), 3.0);   // above the last point: its bandwidth
  EXPECT_DOUBLE_EQ(c.gbps(512), 0.5);       // below the first: constant time
  EXPECT_DOUBLE_EQ(c.step_seconds(512), 1024 / 1e9);
  EXPECT_DOUBLE_EQ(c.step_seconds(1024), 1024 / 1e9);
  EXPECT_DOUBLE_EQ(c.step_seconds(0), 0.0);
  EXPECT_THROW(sc::BandwidthCurve({{4096, 1.0}, {1024, 2.0}}), ravensp::Error);
  EXPECT_THROW(sc::BandwidthCurve({}), ravensp::Error);
}

TEST(ScalingModel, DeviceMdCurveReproducesTheMeasuredCeilings) {
  auto c = sc::device_md_allgather();
  EXPECT_NEAR(c.step_seconds(65536), 38e-6, 1e-12);
  EXPECT_DOUBLE_EQ(c.gbps(1 << 20), 28.0);
  EXPECT_DOUBLE_EQ(c.gbps(16 << 20), 184.0);
  EXPECT_DOUBLE_EQ(c.gbps(256 << 20), 256.0);
  double prev = 0;  // time grows with size past the latency floor
  for (double b = 65536; b <= 1e9; b *= 1.5) {
    EXPECT_GE(c.step_seconds(b), prev);
    prev = c.step_seconds(b);
  }
}

TEST(ScalingModel, CollectiveTimes) {
  sc::Cluster cl;
  const double S = 1 << 20;
  EXPECT_DOUBLE_EQ(sc::allgather_seconds(cl, S, 1), 0.0);
  // 1 MiB at 28 GB/s is 37.4 us, just under the 38 us floor of 64 KiB: the floor holds.
  EXPECT_NEAR(sc::allgather_seconds(cl, S, 2), std::max(38e-6, S / 28e9), 1e-15);
  EXPECT_NEAR(sc::allgather_seconds(cl, S, 8), 7 * 38e-6, 1e-15);
  const double S16 = 16.0 * (1 << 20);  // above the floor: bytes / bus bandwidth per step
  EXPECT_DOUBLE_EQ(sc::allgather_seconds(cl, S16, 8), 7 * S16 / (184.0 * 1e9));
  // Past one node the step runs at least at the inter-node bandwidth.
  const double big = 256.0 * (1 << 20);
  EXPECT_DOUBLE_EQ(sc::allgather_seconds(cl, big, 16), 15 * big / (cl.internode_gbps * 1e9));
  EXPECT_DOUBLE_EQ(sc::allreduce_seconds(cl, 64 * S, 8), 2 * sc::allgather_seconds(cl, 8 * S, 8));
  // p2p: the all-gather curve scaled by 300/256, floored at 38 us, capped across nodes.
  EXPECT_DOUBLE_EQ(sc::p2p_seconds(cl, big, false), big / (300.0 * 1e9));
  EXPECT_DOUBLE_EQ(sc::p2p_seconds(cl, big, true), big / (cl.internode_gbps * 1e9));
  EXPECT_NEAR(sc::p2p_seconds(cl, 100, false), 38e-6, 1e-12);
}

TEST(ScalingModel, CalibrationInterpolatesTheMeasuredLayer) {
  sc::Calibration c;
  sc::Shape s;
  EXPECT_DOUBLE_EQ(sc::raven_layer_ms(c, s, 262144, false), 151.558);
  EXPECT_DOUBLE_EQ(sc::raven_layer_ms(c, s, 524288, true), 306.052);
  EXPECT_DOUBLE_EQ(sc::raven_layer_ms(c, s, 32768, false), 42.038 / 2);  // proportional below
  EXPECT_DOUBLE_EQ(sc::raven_layer_ms(c, s, 163840, false), (42.038 + 151.558) / 2);
  s.slots = 256;
  EXPECT_DOUBLE_EQ(sc::raven_layer_ms(c, s, 262144, false), 151.558 + c.m256_extra_us_per_token * 262.144);
  s.slots = 128;
  EXPECT_THROW(sc::raven_layer_ms(c, s, 1024, false), ravensp::Error);
  // Attention: 3.5 * 4*T^2*H*D/2 / P at 423 TFLOP/s.
  s = sc::Shape{};
  EXPECT_DOUBLE_EQ(sc::attention_layer_s(c, s, 65536, 4), 3.5 * 2.0 * 65536.0 * 65536 * 16 * 64 / 4 / 423e12);
}

TEST(ScalingModel, RestIsTheLeastSquaresRemainder) {
  sc::Calibration c;
  sc::Shape s;
  // With the step measured as exactly known + r*T, the fit must return r.
  const double r = 7e-6;
  for (size_t i = 0; i < c.train_tokens.size(); ++i) {
    const double T = c.train_tokens[i];
    sc::Calibration then = c;
    then.raven_ms_local = c.train_raven_ms_local;
    c.train_step_s[i] = 20 * sc::raven_layer_ms(then, s, T, false) * 1e-3 * (4.0 / 3) +
                        4 * sc::attention_layer_s(c, s, T, 1) * (1 + 1 / 3.5) + r * T;
  }
  EXPECT_NEAR(sc::rest_s_per_token(c, s), r, 1e-15);
}

TEST(ScalingModel, RestIsFittedOnTheLayerTheStepsRan) {
  // A faster Raven layer must reach the predicted step: the rest of the step is
  // fitted on the layer the measured steps ran, so it must not absorb the gain.
  sc::Calibration c;
  sc::Shape s;
  sc::Cluster cl;
  sc::Calibration faster = c;
  for (double& ms : faster.raven_ms_local) ms *= 0.5;
  EXPECT_DOUBLE_EQ(sc::rest_s_per_token(faster, s), sc::rest_s_per_token(c, s));
  const double T = 262144;
  const auto a = sc::predict(s, c, cl, sc::Scheme::kLasp2, sc::ComputeMode::kTarget, 1, T);
  const auto b = sc::predict(s, faster, cl, sc::Scheme::kLasp2, sc::ComputeMode::kTarget, 1, T);
  EXPECT_NEAR(a.step_s - b.step_s, 20 * 0.5 * c.raven_ms_local[1] * 1e-3 * (4.0 / 3), 1e-12);
  // With today's layer equal to the one the steps ran, the fit reproduces the
  // 256K step (the longest, where per-step fixed costs weigh least) to 1%.
  sc::Calibration then = c;
  then.raven_ms_local = c.train_raven_ms_local;
  const auto f = sc::predict(s, then, cl, sc::Scheme::kLasp2, sc::ComputeMode::kTarget, 1, T);
  EXPECT_NEAR(f.step_s / c.train_step_s[2], 1.0, 0.01);
}

TEST(ScalingModel, ExchangeSecondsIsTheWireTimeOfOneExchange) {
  sc::Cluster cl;
  sc::Shape s;  // zigzag, 1 MB all-gather per rank (latency floor territory)
  const double seg = sc::lasp2_state_bytes(s) / 2;
  for (int P : {1, 2, 4, 8}) {
    EXPECT_DOUBLE_EQ(sc::exchange_seconds(cl, s, sc::Scheme::kLasp2, P),
                     sc::allgather_seconds(cl, sc::lasp2_state_bytes(s), P));
    EXPECT_DOUBLE_EQ(sc::exchange_seconds(cl, s, sc::Scheme::kLasp2Overlap, P),
                     sc::exchange_seconds(cl, s, sc::Scheme::kLasp2, P));
    // Zigzag: 2(P-1) serial hops of one segment's state (the middle pair shares a rank).
    EXPECT_DOUBLE_EQ(sc::exchange_seconds(cl, s, sc::Scheme::kLasp1, P), 2 * (P - 1) * sc::p2p_seconds(cl, seg, false));
  }
  // Two nodes: the chain crosses the boundary twice (out and back).
  EXPECT_DOUBLE_EQ(sc::exchange_seconds(cl, s, sc::Scheme::kLasp1, 16),
                   28 * sc::p2p_seconds(cl, seg, false) + 2 * sc::p2p_seconds(cl, seg, true));
  s.segments_per_rank = 1;  // contiguous: P-1 hops of the whole state
  EXPECT_DOUBLE_EQ(sc::exchange_seconds(cl, s, sc::Scheme::kLasp1, 4),
                   3 * sc::p2p_seconds(cl, sc::lasp2_state_bytes(s), false));
  EXPECT_THROW(sc::exchange_seconds(cl, s, sc::Scheme::kRing, 4), ravensp::Error);
}

TEST(ScalingModel, PredictionBookkeeping) {
  sc::Calibration c;
  sc::Cluster cl;
  sc::Shape s;
  for (auto x : {sc::Scheme::kLasp2Overlap, sc::Scheme::kLasp2, sc::Scheme::kLasp1, sc::Scheme::kRing})
    for (int P : {1, 8, 64}) {
      auto p = sc::predict(s, c, cl, x, sc::ComputeMode::kTarget, P, 2097152);
      const double compute = p.raven_s + p.attn_s + p.rest_s;
      EXPECT_DOUBLE_EQ(p.step_s, compute + p.exposed_s + p.grad_allreduce_s);
      EXPECT_DOUBLE_EQ(p.efficiency, compute / p.step_s);
      EXPECT_DOUBLE_EQ(p.tokens_per_s_per_gpu, 2097152.0 / P / p.step_s);
      EXPECT_LE(p.exposed_s, p.exchange_s + 1e-15);
      if (P == 1) {
        EXPECT_EQ(p.exchange_s + p.grad_allreduce_s, 0.0);
      }
    }
  // LASP-2 without overlap: per Raven layer 2 forward (recompute) + 1 backward all-gathers.
  s.attn_layers = 0;
  auto p = sc::predict(s, c, cl, sc::Scheme::kLasp2, sc::ComputeMode::kTarget, 8, 262144);
  const double sync = sc::exchange_sync_s(c, cl);
  EXPECT_DOUBLE_EQ(p.exposed_s, 24 * 3 * (sync + sc::allgather_seconds(cl, sc::lasp2_state_bytes(s), 8)));
  // LASP-1 zigzag on one node: 2(P-1) serial hops of one segment's state per pass.
  auto q = sc::predict(s, c, cl, sc::Scheme::kLasp1, sc::ComputeMode::kTarget, 8, 262144);
  EXPECT_DOUBLE_EQ(q.exposed_s, 24 * 3 * (sync + 14 * sc::p2p_seconds(cl, sc::lasp2_state_bytes(s) / 2, false)));
  EXPECT_THROW(sc::predict(s, c, cl, sc::Scheme::kLasp2, sc::ComputeMode::kTarget, 0, 10), ravensp::Error);
}

TEST(ScalingModel, ExchangeSyncIsTheMeasuredTwoGpuExposureBeyondBandwidth) {
  sc::Calibration c;
  sc::Cluster cl;
  c.lasp2_exposed_ms_2gpu = {0.9, 0.2, 0.5};  // median 0.5 ms over 2 exchanges per layer
  const double ag = sc::allgather_seconds(cl, sc::lasp2_state_bytes(sc::Shape{}), 2);
  EXPECT_DOUBLE_EQ(sc::exchange_sync_s(c, cl), 0.25e-3 - ag);
  c.lasp2_exposed_ms_2gpu = {0.01, 0.01, 0.01};  // below the bandwidth model: no negative cost
  EXPECT_EQ(sc::exchange_sync_s(c, cl), 0.0);
  c.lasp2_exposed_ms_2gpu.clear();
  EXPECT_THROW(sc::exchange_sync_s(c, cl), ravensp::Error);
  // Paid once per exchange at P > 1 by every scheme but the (hypothetical) GSA ring.
  c = sc::Calibration{};
  c.lasp2_exposed_ms_2gpu = {0.9, 0.2, 0.5};
  sc::Shape s;
  s.attn_layers = 0;
  const double sync = sc::exchange_sync_s(c, cl);
  ASSERT_GT(sync, 0);
  auto a = sc::predict(s, c, cl, sc::Scheme::kLasp2Overlap, sc::ComputeMode::kTarget, 2, 262144);
  EXPECT_GE(a.exposed_s, 24 * 3 * sync);
  auto one = sc::predict(s, c, cl, sc::Scheme::kLasp2, sc::ComputeMode::kTarget, 1, 262144);
  EXPECT_EQ(one.exposed_s, 0.0);
}
