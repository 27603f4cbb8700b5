// ravensp-bench's driver end to end on 2 MPI CPU ranks, tiny shapes: every
// workload records an ok point with consistent bookkeeping on both ranks, and
// rank 0's JSON and CSV files hold one record per point; the per-point callback
// (which the launcher uses to rewrite its files) sees every point in order.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "ravensp/bench.h"

namespace rb = ravensp::bench;

TEST(Driver, TwoRanksAllWorkloads) {
  auto world = std::shared_ptr<ravensp::comm::Communicator>(ravensp::comm::init_mpi_world());
  ASSERT_EQ(world->size(), 2);
  const std::string cfg = std::string(RAVENSP_SOURCE_DIR) + "/configs/tiny-mqar.cfg";
  std::vector<std::string> args{"ravensp-bench",
                                "--what=sp_gsa_lasp2,sp_gsa_lasp1,ring_attention,hybrid_block,train_step",
                                "--seq=256,512", "--repeats=2", "--warmup=1", "--dtype=fp32",
                                "--device=cpu", "--threads=1", "--model_config=" + cfg};
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto o = rb::parse_options(int(argv.size()), argv.data());
  ASSERT_TRUE(o);
  // The callback sees the records so far after every point, in sweep order.
  std::vector<size_t> seen;
  std::vector<std::string> order;
  auto recs = rb::run(*o, world, [&](const std::vector<rb::Record>& so_far) {
    seen.push_back(so_far.size());
    order.push_back(so_far.back().what + "@" + std::to_string(so_far.back().seq_len));
  });
  ASSERT_EQ(recs.size(), 10u);
  ASSERT_EQ(seen.size(), 10u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i], i + 1);
    EXPECT_EQ(order[i], recs[i].what + "@" + std::to_string(recs[i].seq_len));
  }
  for (const auto& r : recs) {
    SCOPED_TRACE(r.what + " T=" + std::to_string(r.seq_len));
    EXPECT_EQ(r.status, "ok") << r.error;
    EXPECT_EQ(r.world_size, 2);
    EXPECT_EQ(r.tokens_per_rank * 2, r.seq_len);
    EXPECT_GT(r.step_ms, 0);
    EXPECT_LE(r.step_ms_min, r.step_ms);
    EXPECT_GE(r.step_ms_max, r.step_ms);
    EXPECT_GT(r.flops_per_rank, 0);
    EXPECT_GT(r.peak_mem_gb, 0);
    EXPECT_EQ(r.mem_kind, "cpu_peak_rss");
    EXPECT_DOUBLE_EQ(r.tokens_per_s_per_rank, r.tokens_per_rank / (r.step_ms * 1e-3));
    EXPECT_GE(r.comm_share, 0);
    EXPECT_LE(r.comm_share, 1);
    // Host time inside collectives is real on the blocking MPI backend.
    if (r.what != "train_step") {
      EXPECT_GT(r.comm_host_ms, 0);
    }
    if (r.what.rfind("sp_gsa", 0) == 0 || r.what == "ring_attention") {
      EXPECT_GT(r.local_ms, 0);
      EXPECT_EQ(r.exposed_comm_method, "baseline_difference");
    }
  }
  // Both ranks hold the same (all-reduced) times.
  std::vector<double> t{recs[0].step_ms, -recs[0].step_ms};
  auto b = ravensp::comm::host_buffer(t.data(), t.size());
  world->all_reduce(b, b, ravensp::comm::ReduceOp::kMax);
  EXPECT_DOUBLE_EQ(t[0], -t[1]);

  if (world->rank() == 0) {
    const std::string js = ::testing::TempDir() + "bench_driver.json", cs = ::testing::TempDir() + "bench_driver.csv";
    auto meta = rb::collect_meta("cpu", "mpi", 2);
    rb::write_json(js, meta, recs);
    rb::write_csv(cs, meta, recs);
    std::ifstream jf(js), cf(cs);
    std::stringstream jtxt;
    jtxt << jf.rdbuf();
    EXPECT_EQ(jtxt.str(), rb::document_json(meta, recs));
    std::string line;
    int lines = 0;
    while (std::getline(cf, line)) ++lines;
    EXPECT_EQ(lines, 11);  // header + 10 records
    EXPECT_FALSE(std::ifstream(js + ".tmp").good()) << "the temporary file must be renamed over the output";
    std::remove(js.c_str());
    std::remove(cs.c_str());
  }
}

TEST(Driver, LengthsMustSplitOverTheRanks) {
  auto world = std::shared_ptr<ravensp::comm::Communicator>(ravensp::comm::init_mpi_world());
  const char* argv[] = {"ravensp-bench", "--seq=258", "--device=cpu", "--dtype=fp32"};
  auto o = rb::parse_options(4, argv);
  EXPECT_THROW(rb::run(*o, world), ravensp::Error);  // 258 % (2 ranks * 2 zigzag pieces) != 0
}
