// SP GSA (LASP-2 and LASP-1) on P CPU ranks equals the single-process op in
// fp64: outputs and every gradient on every rank, both layouts, an initial state
// on rank 0, packed documents crossing rank boundaries; bad inputs fail on every
// rank with a message naming the problem.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ravensp/comm.h"
#include "ravensp/ops.h"
#include "ravensp/sp.h"

namespace ravensp::sp {
namespace {

int64_t world_group() {
  static int64_t h = register_group(std::shared_ptr<comm::Communicator>(comm::init_mpi_world()));
  return h;
}

struct Global {
  torch::Tensor q, k, v, s, g, hk0, hv0, w_out;
};

// Identical on every rank (same seed). The decay is strong enough that a state
// from the wrong segment changes the result well beyond the tolerance.
Global make_global(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t M) {
  torch::manual_seed(42);
  auto d = torch::kDouble;
  Global x;
  x.q = 0.5 * torch::randn({B, T, H, K}, d);
  x.k = 0.5 * torch::randn({B, T, H, K}, d);
  x.v = torch::randn({B, T, H, V}, d);
  auto w = torch::rand({B, T, H, M}, d) * (torch::rand({B, T, H, M}, d) < 0.6);
  x.g = -0.3 * torch::rand({B, T, H, M}, d) * w;
  x.s = 1 - x.g.exp();
  x.hk0 = torch::randn({B, H, K, M}, d);
  x.hv0 = torch::randn({B, H, M, V}, d);
  x.w_out = torch::randn({B, T, H, V}, d);
  return x;
}

struct Case {
  Layout layout;
  StateExchange exchange;
  bool packed;
};

void run_case(const Case& c) {
  comm::Communicator& cm = group(world_group());
  const int P = cm.size(), r = cm.rank();
  const int64_t per_rank = c.layout == Layout::kZigzag ? 10 : 9;
  const int64_t T = per_rank * P, B = c.packed ? 1 : 2, H = 2, K = 4, V = 3, M = 5;
  Global x = make_global(B, T, H, K, V, M);
  std::optional<torch::Tensor> cu;
  if (c.packed) {
    // A document of length 1, one spanning three or more ranks, boundaries on and
    // off segment edges.
    std::vector<int64_t> offs{0, 1, 4, 4 + per_rank, T - 2 * per_rank - 3, T - 1, T};
    offs.erase(std::remove_if(offs.begin(), offs.end(), [&](int64_t o) { return o < 0 || o > T; }),
               offs.end());
    std::sort(offs.begin(), offs.end());
    offs.erase(std::unique(offs.begin(), offs.end()), offs.end());
    cu = torch::tensor(offs, torch::kLong);
  }
  // Single-process reference.
  std::vector<torch::Tensor> ins{x.q, x.k, x.v, x.s, x.g};
  if (!c.packed) ins.insert(ins.end(), {x.hk0, x.hv0});
  for (auto& t : ins) t = t.clone().requires_grad_();
  std::optional<torch::Tensor> h0k, h0v;
  if (!c.packed) { h0k = ins[5]; h0v = ins[6]; }
  auto [o_ref, hkT, hvT] = ops::gsa_chunk(ins[0], ins[1], ins[2], ins[3], ins[4], 0.7, h0k, h0v, cu, 4);
  (o_ref * x.w_out).sum().backward();
  // This rank's shard through the SP op.
  std::vector<torch::Tensor> loc;
  for (int i = 0; i < 5; ++i) loc.push_back(shard(ins[i].detach(), 1, c.layout, r, P).requires_grad_());
  std::optional<torch::Tensor> lh0k, lh0v;
  if (!c.packed && r == 0) {
    lh0k = x.hk0.clone().requires_grad_();
    lh0v = x.hv0.clone().requires_grad_();
  }
  auto o = sp_gsa(loc[0], loc[1], loc[2], loc[3], loc[4], 0.7, lh0k, lh0v, cu, world_group(),
                  c.layout, c.exchange, 4);
  (o * shard(x.w_out, 1, c.layout, r, P)).sum().backward();
  const char* names[] = {"q", "k", "v", "s", "g"};
  auto expect_close = [&](const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
    ASSERT_TRUE(got.defined()) << what;
    ASSERT_GT(want.abs().max().item<double>(), 1e-6) << what << " reference is zero";
    EXPECT_LT((got - want).abs().max().item<double>(), 1e-10)
        << what << " on rank " << r << " of " << P << " (" << layout_name(c.layout) << ")";
  };
  expect_close(o, shard(o_ref.detach(), 1, c.layout, r, P), "output");
  for (int i = 0; i < 5; ++i)
    expect_close(loc[i].grad(), shard(ins[i].grad(), 1, c.layout, r, P), std::string("d") + names[i]);
  if (lh0k) {
    expect_close(lh0k->grad(), ins[5].grad(), "dhk0");
    expect_close(lh0v->grad(), ins[6].grad(), "dhv0");
  }
}

TEST(SpGsa, Lasp2ContiguousWithInitialState) { run_case({Layout::kContiguous, StateExchange::kLasp2, false}); }
TEST(SpGsa, Lasp2ZigzagWithInitialState) { run_case({Layout::kZigzag, StateExchange::kLasp2, false}); }
TEST(SpGsa, Lasp2ContiguousPackedDocuments) { run_case({Layout::kContiguous, StateExchange::kLasp2, true}); }
TEST(SpGsa, Lasp2ZigzagPackedDocuments) { run_case({Layout::kZigzag, StateExchange::kLasp2, true}); }
TEST(SpGsa, Lasp1ContiguousWithInitialState) { run_case({Layout::kContiguous, StateExchange::kLasp1, false}); }
TEST(SpGsa, Lasp1ZigzagPackedDocuments) { run_case({Layout::kZigzag, StateExchange::kLasp1, true}); }

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(SpGsa, RanksThatDisagreeFailTogether) {
  comm::Communicator& cm = group(world_group());
  const int64_t L = cm.rank() == cm.size() - 1 ? 6 : 8;  // the last rank has a different length
  auto t = torch::randn({1, L, 1, 2}, torch::kDouble);
  auto msg = error_of([&] { sp_gsa(t, t, t, t, -t.abs(), 1.0, {}, {}, {}, world_group(), Layout::kContiguous); });
  EXPECT_NE(msg.find("disagree on local length"), std::string::npos) << msg;
}

TEST(SpGsa, OneRanksBadInputRaisesOnEveryRank) {
  comm::Communicator& cm = group(world_group());
  auto u = torch::randn({1, 8, 1, 2}, torch::kDouble);
  // Only rank 0 passes a float32 k: its local check, relayed by the handshake,
  // must raise on the other ranks too (they would otherwise wait in the exchange).
  auto k = cm.rank() == 0 ? u.to(torch::kFloat) : u;
  auto msg = error_of([&] { sp_gsa(u, k, u, u, -u.abs(), 1.0, {}, {}, {}, world_group(), Layout::kContiguous); });
  EXPECT_NE(msg.find("rank 0 rejected its inputs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("k must have q's dtype"), std::string::npos) << msg;
  // The group still works afterwards: the handshake left no transfer half-done.
  auto o = sp_gsa(u, u, u, u, -u.abs(), 1.0, {}, {}, {}, world_group(), Layout::kContiguous);
  EXPECT_EQ(o.sizes(), u.sizes());
}

// Forwards to a real communicator and counts the all-gathers it carries.
class Counting : public comm::Communicator {
 public:
  explicit Counting(std::shared_ptr<comm::Communicator> inner)
      : comm::Communicator(inner->name() + "+counting"), inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  comm::Backend backend() const override { return inner_->backend(); }
  comm::DeviceType memory() const override { return inner_->memory(); }
  int all_gathers = 0;

 protected:
  void all_gather_impl(const comm::Buffer& s, const comm::Buffer& r) override {
    ++all_gathers;
    inner_->all_gather(s, r);
  }
  void all_reduce_impl(const comm::Buffer& s, const comm::Buffer& r, comm::ReduceOp op) override {
    inner_->all_reduce(s, r, op);
  }
  void broadcast_impl(const comm::Buffer& b, int root) override { inner_->broadcast(b, root); }
  void send_recv_impl(const std::vector<comm::P2POp>& ops) override { inner_->send_recv(ops); }
  void barrier_impl() override { inner_->barrier(); }
  std::unique_ptr<comm::Communicator> split_impl(int color, int key, const std::string& name) override {
    return inner_->split(color, key, name);
  }

 private:
  std::shared_ptr<comm::Communicator> inner_;
};

// With a control group set, the shape handshake travels there and the group
// itself carries only the state exchange (one all-gather for a LASP-2 forward);
// a one-rank group skips the handshake; a control of the wrong size is refused.
TEST(SpGsa, ControlGroupCarriesTheHandshake) {
  auto data = std::make_shared<Counting>(std::shared_ptr<comm::Communicator>(comm::init_mpi_world()));
  auto ctl = std::make_shared<Counting>(std::shared_ptr<comm::Communicator>(comm::init_mpi_world()));
  const int64_t h = register_group(data);
  EXPECT_EQ(&control_group(h), data.get());  // none set: the group itself
  set_control_group(h, ctl);
  EXPECT_EQ(&control_group(h), ctl.get());
  const int P = data->size();
  auto x = make_global(1, 8 * P, 1, 2, 2, 3);
  auto sh = [&](const torch::Tensor& t) { return shard(t, 1, Layout::kZigzag, data->rank(), P); };
  auto o = sp_gsa(sh(x.q), sh(x.k), sh(x.v), sh(x.s), sh(x.g), 0.5, {}, {}, {}, h, Layout::kZigzag);
  EXPECT_EQ(ctl->all_gathers, 1);
  EXPECT_EQ(data->all_gathers, 1);
  // The same result as through the world group, whose handshake shares its exchange.
  auto want = sp_gsa(sh(x.q), sh(x.k), sh(x.v), sh(x.s), sh(x.g), 0.5, {}, {}, {}, world_group(), Layout::kZigzag);
  EXPECT_TRUE(torch::equal(o, want));
  // A mismatch is still caught, on the control plane.
  const int64_t L = data->rank() == P - 1 ? 6 : 8;
  auto t = torch::randn({1, L, 1, 2}, torch::kDouble);
  auto msg = error_of([&] { sp_gsa(t, t, t, t, -t.abs(), 1.0, {}, {}, {}, h, Layout::kContiguous); });
  EXPECT_NE(msg.find("disagree on local length"), std::string::npos) << msg;
  EXPECT_EQ(ctl->all_gathers, 2);
  EXPECT_EQ(data->all_gathers, 1);
  // One rank alone: nothing to agree on, no handshake; the state exchange alone.
  auto alone = std::make_shared<Counting>(std::shared_ptr<comm::Communicator>(
      data->split(data->rank(), 0, "alone")));
  const int64_t h1 = register_group(alone);
  sp_gsa(x.q, x.k, x.v, x.s, x.g, 0.5, {}, {}, {}, h1, Layout::kContiguous);
  EXPECT_EQ(alone->all_gathers, 1);
  // A control group must have the group's ranks.
  msg = error_of([&] { set_control_group(h1, ctl); });
  if (P > 1) {
    EXPECT_NE(msg.find("the control communicator is rank"), std::string::npos) << msg;
  }
  unregister_group(h1);
  unregister_group(h);
}

TEST(SpGsa, BadLocalInputsNameTheArgument) {
  auto t = torch::randn({1, 7, 1, 2}, torch::kDouble);
  auto msg = error_of([&] { sp_gsa(t, t, t, t, -t.abs(), 1.0, {}, {}, {}, world_group(), Layout::kZigzag); });
  EXPECT_NE(msg.find("local length 7 must be divisible by 2"), std::string::npos) << msg;
  auto u = torch::randn({1, 8, 1, 2}, torch::kDouble);
  msg = error_of([&] { sp_gsa(u, u.to(torch::kFloat), u, u, -u.abs(), 1.0, {}, {}, {}, world_group(), Layout::kContiguous); });
  EXPECT_NE(msg.find("k must have q's dtype"), std::string::npos) << msg;
  msg = error_of([&] { sp_gsa(u, u, u.to(torch::kMeta), u, -u.abs(), 1.0, {}, {}, {}, world_group(), Layout::kContiguous); });
  EXPECT_NE(msg.find("v must be on q's device"), std::string::npos) << msg;
  const int P = group(world_group()).size();
  msg = error_of([&] {
    sp_gsa(u, u, u, u, -u.abs(), 1.0, {}, {}, torch::tensor({0, 5}, torch::kLong), world_group(),
           Layout::kContiguous);
  });
  EXPECT_NE(msg.find("must end at the global length " + std::to_string(8 * P)), std::string::npos) << msg;
}

}  // namespace
}  // namespace ravensp::sp
