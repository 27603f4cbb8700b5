// FLOP counts the driver reports (and the scaling model's attention cost uses):
// chunked GSA as the kernels run it, softmax attention with the causal halving.
#include "ravensp/bench.h"

namespace ravensp::bench {

double gsa_flops_fwd(int64_t B, int64_t H, int64_t K, int64_t V, int64_t M, int64_t T, int64_t chunk) {
  RAVENSP_CHECK(B > 0 && H > 0 && K > 0 && V > 0 && M > 0 && T >= 0 && chunk > 0,
                "gsa_flops_fwd: sizes must be positive, got B=", B, " H=", H, " K=", K, " V=", V,
                " M=", M, " T=", T, " chunk=", chunk);
  // Per token: intra pairs over the chunk (q k^T: C*K; p s^T: C*M; A2 v: C*V),
  // inter-chunk reads of the states (q Hk: K*M; p Hv: M*V) and the chunk's state
  // updates (K*M + M*V). A short last chunk still pays for C pairs per token,
  // which the kernels also compute (masked), so C is not trimmed.
  const double C = static_cast<double>(chunk);
  const double per_tok = C * K + K * M + C * M + M * V + C * V + double(K) * M + double(M) * V;
  return 2.0 * B * H * T * per_tok;
}

double attention_flops_fwd(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, bool causal) {
  RAVENSP_CHECK(B > 0 && Tq >= 0 && Tk >= 0 && H > 0 && D > 0, "attention_flops_fwd: bad sizes B=", B,
                " Tq=", Tq, " Tk=", Tk, " H=", H, " D=", D);
  RAVENSP_CHECK(!causal || Tq == Tk, "attention_flops_fwd: causal needs Tq == Tk, got ", Tq, " and ", Tk);
  // QK^T and PV: 2 matmuls of Tq x Tk x D multiply-adds per head; causal keeps
  // half of the score matrix (the convention FlashAttention and our SDPA figures use).
  const double full = 4.0 * B * double(Tq) * double(Tk) * H * D;
  return causal ? full / 2.0 : full;
}

}  // namespace ravensp::bench
