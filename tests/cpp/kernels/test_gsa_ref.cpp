// The CPU GSA reference, torch-free: the chunked form against the token-by-token
// form (any chunk size, T not a multiple of it), packed sequences against
// separate calls, the backward against central finite differences in fp64.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/gsa/params.h"

namespace ravensp::kernels {
namespace {

struct Problem {
  int64_t B, T, H, K, V, M;
  std::vector<double> q, k, v, s, g, hk0, hv0;
  std::vector<int64_t> cu;  // empty: not packed

  Problem(int64_t B_, int64_t T_, int64_t H_, int64_t K_, int64_t V_, int64_t M_, unsigned seed,
          bool with_state, std::vector<int64_t> cu_ = {})
      : B(B_), T(T_), H(H_), K(K_), V(V_), M(M_), cu(std::move(cu_)) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    auto fill = [&](std::vector<double>& x, int64_t n, double sc) {
      x.resize(n);
      for (auto& e : x) e = sc * n01(rng);
    };
    fill(q, B * T * H * K, 0.5);
    fill(k, B * T * H * K, 0.5);
    fill(v, B * T * H * V, 1.0);
    g.resize(B * T * H * M);
    s.resize(B * T * H * M);
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] = -0.5 * u01(rng);  // log decay in (-0.5, 0]
      s[i] = 1.0 - std::exp(g[i]);
    }
    if (with_state) {
      fill(hk0, num_seqs() * H * K * M, 0.3);
      fill(hv0, num_seqs() * H * M * V, 0.3);
    }
  }
  int64_t num_seqs() const { return cu.empty() ? B : static_cast<int64_t>(cu.size()) - 1; }
  GsaShape shape() const {
    GsaShape sh;
    sh.batch = B; sh.seqlen = T; sh.heads = H; sh.head_k = K; sh.head_v = V; sh.slots = M;
    sh.num_seqs = num_seqs();
    sh.cu_seqlens = cu.empty() ? nullptr : cu.data();
    sh.cu_seqlens_host = sh.cu_seqlens;
    return sh;
  }
};

struct FwdOut {
  std::vector<double> o, p, hkT, hvT;
};

FwdOut run_fwd(const Problem& pr, bool chunked, int64_t chunk) {
  FwdOut r;
  r.o.assign(pr.B * pr.T * pr.H * pr.V, 0);
  r.p.assign(pr.B * pr.T * pr.H * pr.M, 0);
  r.hkT.assign(pr.num_seqs() * pr.H * pr.K * pr.M, 0);
  r.hvT.assign(pr.num_seqs() * pr.H * pr.M * pr.V, 0);
  GsaFwdParams P;
  P.shape = pr.shape();
  P.dtype = P.accum_dtype = DType::kFloat64;
  P.scale = 0.7;
  P.chunk_size = chunk;
  P.q = pr.q.data(); P.k = pr.k.data(); P.v = pr.v.data(); P.s = pr.s.data(); P.g = pr.g.data();
  P.hk0 = pr.hk0.empty() ? nullptr : pr.hk0.data();
  P.hv0 = pr.hv0.empty() ? nullptr : pr.hv0.data();
  P.o = r.o.data(); P.p = r.p.data(); P.hkT = r.hkT.data(); P.hvT = r.hvT.data();
  if (chunked) gsa_chunk_fwd_cpu(P);
  else gsa_recurrent_fwd_cpu(P);
  return r;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}

class ChunkVsRecurrent : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(ChunkVsRecurrent, ForwardMatches) {
  auto [T, chunk] = GetParam();
  Problem pr(2, T, 2, 8, 6, 5, 1234 + T, /*with_state=*/true);
  FwdOut a = run_fwd(pr, true, chunk), b = run_fwd(pr, false, 1);
  ASSERT_GT(max_abs(b.o), 1e-3);
  ASSERT_GT(max_abs(b.hkT), 1e-3);
  EXPECT_LT(max_abs_diff(a.o, b.o), 1e-12);
  EXPECT_LT(max_abs_diff(a.hkT, b.hkT), 1e-12);
  EXPECT_LT(max_abs_diff(a.hvT, b.hvT), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ChunkVsRecurrent,
                         ::testing::Values(std::make_tuple(1, 4), std::make_tuple(63, 16),
                                           std::make_tuple(64, 16), std::make_tuple(65, 64),
                                           std::make_tuple(130, 32), std::make_tuple(37, 1)));

TEST(GsaRef, PackedEqualsSeparate) {
  Problem packed(1, 50, 2, 4, 3, 6, 77, true, {0, 1, 20, 50});
  FwdOut all = run_fwd(packed, true, 8);
  for (int n = 0; n < 3; ++n) {
    const int64_t bos = packed.cu[n], len = packed.cu[n + 1] - bos;
    Problem one(1, len, 2, 4, 3, 6, 0, true);
    auto slice = [&](const std::vector<double>& src, int64_t d) {
      return std::vector<double>(src.begin() + bos * 2 * d, src.begin() + (bos + len) * 2 * d);
    };
    one.q = slice(packed.q, 4); one.k = slice(packed.k, 4); one.v = slice(packed.v, 3);
    one.s = slice(packed.s, 6); one.g = slice(packed.g, 6);
    one.hk0.assign(packed.hk0.begin() + n * 48, packed.hk0.begin() + (n + 1) * 48);
    one.hv0.assign(packed.hv0.begin() + n * 36, packed.hv0.begin() + (n + 1) * 36);
    FwdOut r = run_fwd(one, true, 8);
    std::vector<double> o_slice(all.o.begin() + bos * 6, all.o.begin() + (bos + len) * 6);
    EXPECT_LT(max_abs_diff(o_slice, r.o), 1e-12) << "sequence " << n;
    std::vector<double> hk(all.hkT.begin() + n * 48, all.hkT.begin() + (n + 1) * 48);
    EXPECT_LT(max_abs_diff(hk, r.hkT), 1e-12) << "sequence " << n;
  }
}

// Loss = <o, W_o> + <hkT, W_k> + <hvT, W_v>; compares the analytic backward of
// either form with central differences for every input.
void check_backward(bool chunked) {
  Problem pr(1, 13, 2, 3, 4, 5, 99, true, {0, 6, 13});
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n01;
  FwdOut base = run_fwd(pr, chunked, 4);
  std::vector<double> Wo(base.o.size()), Wk(base.hkT.size()), Wv(base.hvT.size());
  for (auto* w : {&Wo, &Wk, &Wv})
    for (auto& x : *w) x = n01(rng);
  auto loss = [&](const Problem& p) {
    FwdOut r = run_fwd(p, chunked, 4);
    double l = 0;
    for (size_t i = 0; i < r.o.size(); ++i) l += r.o[i] * Wo[i];
    for (size_t i = 0; i < r.hkT.size(); ++i) l += r.hkT[i] * Wk[i];
    for (size_t i = 0; i < r.hvT.size(); ++i) l += r.hvT[i] * Wv[i];
    return l;
  };
  std::vector<double> dq(pr.q.size()), dk(pr.k.size()), dv(pr.v.size()), ds(pr.s.size()),
      dg(pr.g.size()), dhk0(pr.hk0.size()), dhv0(pr.hv0.size());
  GsaBwdParams P;
  P.shape = pr.shape();
  P.dtype = P.accum_dtype = DType::kFloat64;
  P.scale = 0.7;
  P.chunk_size = 4;
  P.q = pr.q.data(); P.k = pr.k.data(); P.v = pr.v.data(); P.s = pr.s.data(); P.g = pr.g.data();
  P.p = base.p.data(); P.hk0 = pr.hk0.data(); P.hv0 = pr.hv0.data();
  P.d_o = Wo.data(); P.dhkT = Wk.data(); P.dhvT = Wv.data();
  P.dq = dq.data(); P.dk = dk.data(); P.dv = dv.data(); P.ds = ds.data(); P.dg = dg.data();
  P.dhk0 = dhk0.data(); P.dhv0 = dhv0.data();
  if (chunked) gsa_chunk_bwd_cpu(P);
  else gsa_recurrent_bwd_cpu(P);
  struct Item { const char* name; std::vector<double> Problem::*field; std::vector<double>* grad; };
  const Item items[] = {{"q", &Problem::q, &dq}, {"k", &Problem::k, &dk},
                        {"v", &Problem::v, &dv}, {"s", &Problem::s, &ds},
                        {"g", &Problem::g, &dg}, {"hk0", &Problem::hk0, &dhk0},
                        {"hv0", &Problem::hv0, &dhv0}};
  const double eps = 1e-6;
  for (const Item& it : items) {
    ASSERT_GT(max_abs(*it.grad), 1e-4) << it.name;
    double worst = 0;
    for (size_t i = 0; i < (pr.*it.field).size(); ++i) {
      Problem pp = pr, pm = pr;
      (pp.*it.field)[i] += eps;
      (pm.*it.field)[i] -= eps;
      const double fd = (loss(pp) - loss(pm)) / (2 * eps);
      worst = std::max(worst, std::abs(fd - (*it.grad)[i]));
    }
    EXPECT_LT(worst, 1e-7) << "gradient of " << it.name;
  }
}

TEST(GsaRef, ChunkBackwardMatchesFiniteDifferences) { check_backward(true); }
TEST(GsaRef, RecurrentBackwardMatchesFiniteDifferences) { check_backward(false); }

TEST(GsaRef, RejectsHalfTypes) {
  GsaFwdParams P;
  P.dtype = DType::kBFloat16;
  P.accum_dtype = DType::kFloat32;
  try {
    gsa_chunk_fwd_cpu(P);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("bfloat16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ravensp::kernels
