// FLOP counts checked against hand-computed small cases.
#include <gtest/gtest.h>

#include "ravensp/bench.h"

namespace rb = ravensp::bench;

TEST(Flops, GsaOneHeadByHand) {
  // B=1 H=1 K=2 V=3 M=4 T=5 C=2: per token C*K + K*M + C*M + M*V + C*V + K*M + M*V
  // = 4 + 8 + 8 + 12 + 6 + 8 + 12 = 58 multiply-adds; x2 FLOPs x5 tokens = 580.
  EXPECT_DOUBLE_EQ(rb::gsa_flops_fwd(1, 1, 2, 3, 4, 5, 2), 580.0);
}

TEST(Flops, GsaScalesWithBatchHeadsAndTokens) {
  const double one = rb::gsa_flops_fwd(1, 1, 64, 64, 32, 128, 64);
  EXPECT_DOUBLE_EQ(rb::gsa_flops_fwd(2, 3, 64, 64, 32, 128, 64), 6 * one);
  EXPECT_DOUBLE_EQ(rb::gsa_flops_fwd(1, 1, 64, 64, 32, 256, 64), 2 * one);
  EXPECT_DOUBLE_EQ(rb::gsa_flops_fwd(1, 1, 64, 64, 32, 0, 64), 0.0);
}

TEST(Flops, GsaMatchesTheKernelBenchmarkShape) {
  // kernels.json B1 H4 K=V=256 M64 T8192: 7.186 TFLOP/s forward in 0.9339 ms, i.e.
  // 6.711e9 FLOPs by python/ravensp/bench/kernels.py's count; ours must agree.
  const double f = rb::gsa_flops_fwd(1, 4, 256, 256, 64, 8192, 64);
  EXPECT_NEAR(f / (0.9339e-3) / 1e12, 7.186, 0.001);
}

TEST(Flops, AttentionByHand) {
  // 4*B*Tq*Tk*H*D: B=1 Tq=Tk=4 H=2 D=3 -> 384; causal halves it.
  EXPECT_DOUBLE_EQ(rb::attention_flops_fwd(1, 4, 4, 2, 3, false), 384.0);
  EXPECT_DOUBLE_EQ(rb::attention_flops_fwd(1, 4, 4, 2, 3, true), 192.0);
  EXPECT_DOUBLE_EQ(rb::attention_flops_fwd(2, 4, 8, 2, 3, false), 2 * 4 * 4 * 8 * 2 * 3.0);
}

TEST(Flops, AttentionMatchesTheRingBenchmark) {
  // ring_attention.json: cuDNN SDPA T=32768 H16 D128 fwd+bwd 25.6184 ms at 600.86 TFLOP/s.
  const double f = rb::kAttnFwdBwdFactor * rb::attention_flops_fwd(1, 32768, 32768, 16, 128, true);
  EXPECT_NEAR(f / 25.61840057373047e-3 / 1e12, 600.8635, 0.01);
}

TEST(Flops, BadSizesAreErrors) {
  EXPECT_THROW(rb::gsa_flops_fwd(1, 0, 2, 3, 4, 5, 2), ravensp::Error);
  EXPECT_THROW(rb::attention_flops_fwd(1, 4, 8, 2, 3, true), ravensp::Error);  // causal needs Tq == Tk
}
