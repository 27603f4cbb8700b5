// Multi-rank training equals single-rank training in fp64 (DESIGN.md §9): data
// parallel (2 ranks x 1 sequence == 1 rank x 2), sequence parallel through the
// LASP-2 GSA op (contiguous and zigzag, Gumbel noise on), and a hybrid whose
// attention layer goes through the ring op. Rank 0 also runs the reference alone.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "ravensp/comm.h"
#include "ravensp/train.h"
#include "tiny_run.h"

namespace {

using namespace ravensp::train;

std::shared_ptr<ravensp::comm::Communicator> world() {
  static std::shared_ptr<ravensp::comm::Communicator> w = ravensp::comm::init_mpi_world();
  return w;
}

TrainConfig tiny(bool hybrid) {
  TrainConfig c = ravensp::train::test_support::tiny_run(hybrid);
  c.seq_len = 48;
  c.mqar_pairs = 4;
  c.steps = 4;
  c.warmup_steps = 1;
  c.precision = Precision::kFp64;
  c.save_final = false;
  return c;
}

std::string fresh_dir(const std::string& name) {
  return ravensp::train::test_support::fresh_dir("par-" + name);
}

// Losses and grad norms of every step, and the final weights' checksum.
void expect_same(const RunResult& a, const RunResult& b, const char* what) {
  ASSERT_EQ(a.records.size(), b.records.size()) << what;
  for (size_t i = 0; i < a.records.size(); ++i) {
    EXPECT_NEAR(a.records[i].loss, b.records[i].loss, 1e-10 * std::abs(b.records[i].loss))
        << what << " step " << i + 1;
    EXPECT_NEAR(a.records[i].grad_norm, b.records[i].grad_norm, 1e-9 * b.records[i].grad_norm)
        << what << " step " << i + 1;
    EXPECT_NEAR(a.records[i].accuracy, b.records[i].accuracy, 1e-12) << what << " step " << i + 1;
  }
  EXPECT_LT(a.records.back().loss, a.records.front().loss) << what << ": it trains";
  for (const auto& r : a.records) EXPECT_GT(r.comm_ms, 0.0) << what << ": collectives are timed";
}

RunResult reference(TrainConfig c, const std::string& name) {
  c.sp_size = 1;
  c.out_dir = fresh_dir(name + "-ref");
  RunResult r;
  if (world()->rank() == 0) r = run(c, nullptr);
  return r;
}

void broadcast_records(RunResult& r) {
  // Every rank checks against the reference computed on rank 0.
  std::vector<double> v(r.records.size() * 3);
  int64_t n = static_cast<int64_t>(r.records.size());
  world()->broadcast(ravensp::comm::host_buffer(&n, 1), 0);
  v.resize(n * 3);
  if (world()->rank() == 0)
    for (int64_t i = 0; i < n; ++i)
      v[3 * i] = r.records[i].loss, v[3 * i + 1] = r.records[i].grad_norm, v[3 * i + 2] = r.records[i].accuracy;
  world()->broadcast(ravensp::comm::host_buffer(v.data(), v.size()), 0);
  r.records.resize(n);
  for (int64_t i = 0; i < n; ++i)
    r.records[i].loss = v[3 * i], r.records[i].grad_norm = v[3 * i + 1], r.records[i].accuracy = v[3 * i + 2];
}

TEST(Parallel, DataParallelEqualsOneRank) {
  const int P = world()->size();
  auto one = tiny(false);
  one.micro_batch = 2 * P;  // the same sequences, all on one rank
  auto ref = reference(one, "dp");
  broadcast_records(ref);
  auto c = tiny(false);
  c.out_dir = fresh_dir("dp");
  auto got = run(c, world());
  expect_same(got, ref, "dp");
}

TEST(Parallel, SequenceParallelEqualsOneRank) {
  const int P = world()->size();
  auto base = tiny(false);
  auto ref = reference(base, "sp");
  broadcast_records(ref);
  using ravensp::sp::Layout;
  using ravensp::sp::StateExchange;
  for (auto [layout, exchange] : {std::pair{Layout::kContiguous, StateExchange::kLasp2},
                                  std::pair{Layout::kZigzag, StateExchange::kLasp2},
                                  std::pair{Layout::kZigzag, StateExchange::kLasp1}}) {
    auto c = base;
    c.sp_size = P;
    c.layout = layout;
    c.exchange = exchange;
    c.out_dir = fresh_dir("sp");
    auto got = run(c, world());
    std::string what = std::string(ravensp::sp::layout_name(layout)) +
                       (exchange == StateExchange::kLasp1 ? " lasp1" : " lasp2");
    expect_same(got, ref, what.c_str());
  }
}

TEST(Parallel, HybridSequenceParallelEqualsOneRank) {
  const int P = world()->size();
  auto base = tiny(true);
  auto ref = reference(base, "hybrid");
  broadcast_records(ref);
  for (auto layout : {ravensp::sp::Layout::kContiguous, ravensp::sp::Layout::kZigzag}) {
    // recompute reruns the ring and the LASP-2 exchange; offload keeps the blocks'
    // inputs in host memory between the forward and the recompute.
    for (auto [recompute, offload] : {std::pair{false, false}, std::pair{true, false}, std::pair{true, true}}) {
      auto c = base;
      c.sp_size = P;
      c.layout = layout;
      c.checkpoint_blocks = recompute;
      c.offload_checkpoints = offload;
      c.out_dir = fresh_dir("hybrid");
      auto got = run(c, world());
      std::string what = std::string("hybrid ") + ravensp::sp::layout_name(layout) +
                         (recompute ? " recompute" : "") + (offload ? " offload" : "");
      expect_same(got, ref, what.c_str());
    }
  }
}

}  // namespace
