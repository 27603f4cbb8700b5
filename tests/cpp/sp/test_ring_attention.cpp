// Ring attention under mpiexec (2, 3, 4, 5, 8 CPU ranks, fp64): every rank's output and
// dq/dk/dv shard must equal full attention on the whole sequence, for both layouts,
// GQA, sliding windows, packed documents crossing ranks and non-causal masks; bad
// inputs must raise on every rank; the plan must skip masked blocks and balance work.
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <memory>
#include <string>
#include <vector>

#include "ravensp/comm.h"
#include "ravensp/ring_attention.h"
#include "ravensp/sp.h"
#include "sp/ring_loop.h"
#include "sp/ring_plan.h"

namespace rs = ravensp::sp;

namespace {

constexpr double kTol = 1e-10;  // fp64 on both sides: only summation order differs

struct World {
  std::shared_ptr<ravensp::comm::Communicator> comm;
  int64_t handle;
};

World& world() {
  static World* w = [] {
    auto c = std::shared_ptr<ravensp::comm::Communicator>(ravensp::comm::init_mpi_world());
    return new World{c, rs::register_group(c)};
  }();
  return *w;
}

struct Case {
  std::string name;
  rs::Layout layout;
  int64_t B, L, H, Hkv, D;  // L: tokens per rank
  bool causal;
  int64_t window;
  bool docs;
};

// Documents of lengths 1, 3, one long enough to span three ranks, 1, then fives.
std::vector<int64_t> make_cu(int64_t T, int64_t L) {
  std::vector<int64_t> lens = {1, 3, std::min(T - 6, 2 * L + 1), 1};
  int64_t used = 0;
  for (int64_t x : lens) used += x;
  for (int64_t rest = T - used; rest > 0; rest -= 5) lens.push_back(std::min<int64_t>(5, rest));
  std::vector<int64_t> cu = {0};
  for (int64_t x : lens) cu.push_back(cu.back() + x);
  return cu;
}

// Full attention on the whole sequence with a T x T mask: the test's reference only.
at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                     bool causal, int64_t window, const std::vector<int64_t>& cu) {
  const int64_t T = q.size(1), G = q.size(2) / k.size(2);
  at::Tensor ke = k.repeat_interleave(G, 2), ve = v.repeat_interleave(G, 2);
  at::Tensor s = at::einsum("bqhd,bkhd->bhqk", {q, ke}) * scale;
  at::Tensor i = at::arange(T, at::kLong).unsqueeze(1), j = at::arange(T, at::kLong).unsqueeze(0);
  at::Tensor ok = at::ones({T, T}, at::kBool);
  if (causal) ok = ok.logical_and(j.le(i));
  if (window > 0) ok = ok.logical_and(causal ? (i - j).lt(window) : (i - j).abs().lt(window));
  if (!cu.empty()) {
    at::Tensor doc = at::zeros({T}, at::kLong);
    for (size_t d = 1; d + 1 < cu.size(); ++d) doc.narrow(0, cu[d], T - cu[d]).add_(1);
    ok = ok.logical_and(doc.unsqueeze(1).eq(doc.unsqueeze(0)));
  }
  at::Tensor p = at::softmax(s.masked_fill(ok.logical_not(), -INFINITY), -1);
  return at::einsum("bhqk,bkhd->bqhd", {p, ve});
}

double max_rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-300, b.abs().max().item<double>());
}

class RingAttention : public testing::TestWithParam<Case> {};

TEST_P(RingAttention, OutputAndGradsEqualFullAttentionOnEveryRank) {
  const Case& c = GetParam();
  World& w = world();
  const int P = w.comm->size(), r = w.comm->rank();
  const int64_t T = c.L * P;
  at::manual_seed(1234);  // the same global inputs on every rank
  auto opt = at::TensorOptions().dtype(at::kDouble);
  at::Tensor q = at::randn({c.B, T, c.H, c.D}, opt), k = at::randn({c.B, T, c.Hkv, c.D}, opt);
  at::Tensor v = at::randn({c.B, T, c.Hkv, c.D}, opt), go = at::randn({c.B, T, c.H, c.D}, opt);
  // A per-token offset on v makes a block from the wrong rank (or position) visible.
  v = v + at::arange(T, opt).view({1, T, 1, 1}) * 0.01;
  const std::vector<int64_t> cu = c.docs ? make_cu(T, c.L) : std::vector<int64_t>{};
  std::optional<at::Tensor> cu_t;
  if (c.docs) cu_t = at::tensor(cu, at::kLong);
  const double scale = 1.0 / std::sqrt(double(c.D));

  at::Tensor qr = q.clone().requires_grad_(), kr = k.clone().requires_grad_(),
             vr = v.clone().requires_grad_();
  at::Tensor o_ref = reference(qr, kr, vr, scale, c.causal, c.window, cu);
  o_ref.backward(go);

  auto sh = [&](const at::Tensor& x) { return rs::shard(x, 1, c.layout, r, P); };
  at::Tensor ql = sh(q).requires_grad_(), kl = sh(k).requires_grad_(), vl = sh(v).requires_grad_();
  at::Tensor ol = rs::ring_attention(ql, kl, vl, scale, c.causal, c.window, cu_t, w.handle,
                                     c.layout);
  ol.backward(sh(go));

  const std::pair<at::Tensor, at::Tensor> checks[] = {{ol, sh(o_ref.detach())},
                                                      {ql.grad(), sh(qr.grad())},
                                                      {kl.grad(), sh(kr.grad())},
                                                      {vl.grad(), sh(vr.grad())}};
  const char* names[] = {"o", "dq", "dk", "dv"};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(checks[i].first.defined()) << names[i] << " missing on rank " << r;
    ASSERT_GT(checks[i].second.abs().max().item<double>(), 1e-3) << names[i] << " reference is zero";
    EXPECT_LT(max_rel_err(checks[i].first, checks[i].second), kTol)
        << c.name << ": " << names[i] << " differs on rank " << r << " of " << P;
  }
}

std::vector<Case> cases() {
  using L = rs::Layout;
  const L C = L::kContiguous, Z = L::kZigzag;
  return {
      {"causal_contiguous", C, 2, 12, 4, 4, 8, true, 0, false},
      {"causal_zigzag", Z, 2, 12, 4, 4, 8, true, 0, false},
      {"gqa_contiguous", C, 1, 10, 4, 2, 8, true, 0, false},
      {"gqa_mqa_zigzag", Z, 1, 10, 6, 1, 8, true, 0, false},
      {"window_short_contiguous", C, 1, 12, 2, 2, 8, true, 5, false},
      {"window_short_zigzag", Z, 1, 12, 2, 2, 8, true, 5, false},
      {"window_across_ranks_contiguous", C, 1, 12, 2, 1, 8, true, 15, false},
      {"window_across_ranks_zigzag", Z, 1, 12, 2, 1, 8, true, 15, false},
      {"docs_contiguous", C, 1, 12, 4, 2, 8, true, 0, true},
      {"docs_zigzag", Z, 1, 12, 4, 2, 8, true, 0, true},
      {"docs_window_zigzag", Z, 1, 14, 4, 2, 8, true, 4, true},
      {"noncausal_contiguous", C, 2, 8, 2, 2, 8, false, 0, false},
      {"noncausal_docs_window_zigzag", Z, 1, 10, 4, 2, 8, false, 6, true},
      {"odd_lengths_zigzag", Z, 1, 18, 3, 3, 5, true, 0, false},
  };
}

INSTANTIATE_TEST_SUITE_P(Ring, RingAttention, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& i) { return i.param.name; });

// The error must reach every rank, with a message naming the argument.
void expect_error_everywhere(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(RingAttentionErrors, BadInputsRaiseOnEveryRank) {
  World& w = world();
  const int P = w.comm->size(), r = w.comm->rank();
  auto opt = at::TensorOptions().dtype(at::kDouble);
  auto z = rs::Layout::kZigzag;
  at::Tensor q = at::randn({1, 8, 2, 4}, opt), k = at::randn({1, 8, 2, 4}, opt);
  // One rank with another local length: caught by the handshake on all ranks.
  at::Tensor q_odd = r == P - 1 ? at::randn({1, 10, 2, 4}, opt) : q;
  at::Tensor k_odd = r == P - 1 ? at::randn({1, 10, 2, 4}, opt) : k;
  expect_error_everywhere([&] { rs::ring_attention(q_odd, k_odd, k_odd, 0.5, true, 0, {}, w.handle, z); },
                          "disagree on L");
  // One rank with a float32 k: its local check, relayed to the others.
  at::Tensor k_f = r == 0 ? k.to(at::kFloat) : k;
  expect_error_everywhere([&] { rs::ring_attention(q, k_f, k, 0.5, true, 0, {}, w.handle, z); },
                          "rank 0 rejected its inputs");
  expect_error_everywhere([&] { rs::ring_attention(q, k_f, k, 0.5, true, 0, {}, w.handle, z); },
                          "must share one dtype");
  at::Tensor q7 = at::randn({1, 7, 2, 4}, opt), k7 = at::randn({1, 7, 2, 4}, opt);
  expect_error_everywhere([&] { rs::ring_attention(q7, k7, k7, 0.5, true, 0, {}, w.handle, z); },
                          "must be divisible by 2 for the zigzag layout");
  at::Tensor k3 = at::randn({1, 8, 3, 4}, opt);
  expect_error_everywhere([&] { rs::ring_attention(q, k3, k3, 0.5, true, 0, {}, w.handle, z); },
                          "must be a multiple of k/v's heads Hkv=3");
  std::optional<at::Tensor> cu = at::tensor(std::vector<int64_t>{0, 3, 8}, at::kLong);
  expect_error_everywhere([&] { rs::ring_attention(q, k, k, 0.5, true, 0, cu, w.handle, z); },
                          "GLOBAL offsets from 0 to P*L");
  at::Tensor q3 = at::randn({1, 8, 2}, opt);
  expect_error_everywhere([&] { rs::ring_attention(q3, k, k, 0.5, true, 0, {}, w.handle, z); },
                          "q must have 4 dims [B, L, H, D], got [1, 8, 2]");
  // After all that the group still works: errors left no transfer half-done.
  at::Tensor o = rs::ring_attention(q, k, k, 0.5, true, 0, {}, w.handle, z);
  EXPECT_EQ(o.sizes(), q.sizes());
}

// Plan properties: zigzag balances causal work and halves every off-diagonal step;
// contiguous ranks skip the blocks after theirs; a short window talks to one neighbour.
TEST(RingAttentionPlan, SkipsMaskedBlocksAndBalancesZigzag) {
  World& w = world();
  const int P = w.comm->size();
  namespace rg = rs::ring;
  rg::Config c;
  c.world = P;
  c.L = 16;
  c.causal = true;
  auto area = [&](int qr, int kr) {
    int64_t a = 0;
    for (const rg::Tile& t : rg::plan_tiles(c, qr, kr, 1024))
      a += t.kind == rg::TileKind::kCausal ? t.nq * (t.nq + 1) / 2 : t.nq * t.nk;
    return a;
  };
  c.layout = rs::Layout::kZigzag;
  for (int r = 0; r < P; ++r) {
    int64_t total = 0;
    for (int s = 0; s < P; ++s) {
      total += area(r, s);
      if (s != r) EXPECT_EQ(area(r, s), c.L * c.L / 2) << "zigzag rank " << r << " block " << s;
      if (s != r) EXPECT_EQ(rg::plan_tiles(c, r, s, 1024).size(), 1u) << "one half-block call";
    }
    EXPECT_EQ(total, (P - 1) * c.L * c.L / 2 + 2 * (c.L / 2) * (c.L / 2 + 1) / 2 + (c.L / 2) * (c.L / 2));
  }
  c.layout = rs::Layout::kContiguous;
  for (int r = 0; r < P; ++r)
    for (int s = 0; s < P; ++s) EXPECT_EQ(rg::needs_block(c, r, s), s <= r);
  c.window = 5;
  c.comm = w.comm.get();
  c.rank = w.comm->rank();
  const auto steps = rg::active_steps(c);
  ASSERT_EQ(steps.size(), 1u);  // step 1 only: receive from r - 1, lend to r + 1
  EXPECT_EQ(steps[0].s, 1);
}

// The tiles of every rank pair cover exactly the visible (query, key) pairs, once
// each, for small chunks (so chunking, document splits and the causal split run).
TEST(RingAttentionPlan, TilesCoverExactlyTheVisiblePairs) {
  namespace rg = rs::ring;
  const int P = world().comm->size();
  for (int layout = 0; layout < 2; ++layout)
    for (int variant = 0; variant < 6; ++variant) {
      rg::Config c;
      c.world = P;
      c.L = 14;
      c.layout = static_cast<rs::Layout>(layout);
      c.causal = variant != 5;
      c.window = (variant == 1 || variant == 3 || variant == 5) ? 4 : (variant == 4 ? 17 : 0);
      if (variant >= 2) c.cu = make_cu(c.L * P, c.L);
      auto gpos = [&](int rank) { return rs::global_positions(c.layout, rank, P, c.L); };
      for (int qr = 0; qr < P; ++qr)
        for (int kr = 0; kr < P; ++kr) {
          at::Tensor cover = at::zeros({c.L, c.L}, at::kInt);
          for (const rg::Tile& t : rg::plan_tiles(c, qr, kr, 3)) {
            at::Tensor m = at::ones({t.nq, t.nk}, at::kInt);
            if (t.kind == rg::TileKind::kCausal) m = m.tril();
            if (t.kind == rg::TileKind::kMasked) m = rg::tile_mask(c, t, 0, t.nq, at::kCPU).to(at::kInt);
            cover.narrow(0, t.q0, t.nq).narrow(1, t.k0, t.nk).add_(m);
          }
          at::Tensor qp = gpos(qr), kp = gpos(kr), want = at::zeros({c.L, c.L}, at::kInt);
          for (int64_t i = 0; i < c.L; ++i) {
            const rg::KeyRange kr_i = rg::visible_keys(c, qp[i].item<int64_t>());
            want[i] = kp.ge(kr_i.lo).logical_and(kp.le(kr_i.hi)).to(at::kInt);
          }
          ASSERT_TRUE(cover.equal(want)) << "layout " << layout << " variant " << variant
                                         << " q rank " << qr << " kv rank " << kr << "\n"
                                         << cover << "\n" << want;
          EXPECT_EQ(rg::needs_block(c, qr, kr), want.sum().item<int64_t>() > 0);
        }
    }
}

}  // namespace
