// Checkpoints: written atomically (no temporary left, `latest` names the newest,
// a torn temporary from a crash is ignored), and a run resumed from one gives the
// same losses as the uninterrupted run; weights-only loading and mismatches.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdlib.h>

#include "ravensp/train.h"
#include "train/checkpoint.h"
#include "tiny_run.h"

namespace {

namespace fs = std::filesystem;
using namespace ravensp::train;

TrainConfig tiny(const std::string& dir) {
  TrainConfig c = test_support::tiny_run();
  c.seq_len = 24;
  c.mqar_pairs = 3;
  c.steps = 6;
  c.warmup_steps = 2;
  c.precision = Precision::kFp32;
  c.out_dir = dir;
  return c;
}

using test_support::fresh_dir;

TEST(Checkpoint, WritesAtomically) {
  auto dir = fresh_dir("atomic");
  auto cfg = tiny(dir);
  cfg.steps = 2;
  cfg.ckpt_every = 1;
  auto r = run(cfg, nullptr);
  EXPECT_EQ(r.last_checkpoint, (fs::path(dir) / "ckpt-0000002.pt").string());
  EXPECT_EQ(latest_checkpoint(dir), r.last_checkpoint);
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
  }
  // A crash mid-write leaves only a temporary; `latest` still names a whole file.
  std::ofstream(fs::path(dir) / "ckpt-0000003.pt.tmp.999") << "torn";
  EXPECT_EQ(latest_checkpoint(dir), r.last_checkpoint);
  write_atomically((fs::path(dir) / "x.bin").string(), {'a', 'b'});
  EXPECT_EQ(fs::file_size(fs::path(dir) / "x.bin"), 2u);
}

TEST(Checkpoint, ResumeGivesTheUninterruptedLosses) {
  auto cfg = tiny(fresh_dir("straight"));
  auto straight = run(cfg, nullptr);
  ASSERT_EQ(straight.records.size(), 6u);

  // The same run, "killed" after its step-3 checkpoint: later files are removed
  // and `latest` points back at step 3, as if the job had died right there.
  auto dir = fresh_dir("resumed");
  auto first = tiny(dir);
  first.ckpt_every = 3;
  run(first, nullptr);
  fs::remove(fs::path(dir) / "ckpt-0000006.pt");
  write_atomically((fs::path(dir) / "latest").string(), {'c', 'k', 'p', 't', '-', '0', '0', '0', '0', '0',
                                                          '0', '3', '.', 'p', 't'});
  auto again = tiny(dir);
  again.resume = "auto";
  auto resumed = run(again, nullptr);
  EXPECT_EQ(resumed.start_step, 3);
  ASSERT_EQ(resumed.records.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(resumed.records[i].step, straight.records[3 + i].step);
    EXPECT_EQ(resumed.records[i].loss, straight.records[3 + i].loss) << "step " << 4 + i;
    EXPECT_EQ(resumed.records[i].grad_norm, straight.records[3 + i].grad_norm) << "step " << 4 + i;
  }
  EXPECT_LT(straight.records.back().loss, straight.records.front().loss) << "it trains";
}

TEST(Checkpoint, MismatchedModelIsRejectedByName) {
  auto dir = fresh_dir("mismatch");
  auto cfg = tiny(dir);
  cfg.steps = 1;
  auto r = run(cfg, nullptr);
  auto other = tiny(fresh_dir("mismatch2"));
  other.steps = 2;
  other.model.hidden_size = 32;
  other.init_from = r.last_checkpoint;
  try {
    run(other, nullptr);
    FAIL() << "expected a shape error";
  } catch (const ravensp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.embeddings.weight"), std::string::npos) << e.what();
  }
  auto same = tiny(fresh_dir("init_from"));
  same.steps = 1;
  same.init_from = r.last_checkpoint;
  EXPECT_NO_THROW(run(same, nullptr));
}

}  // namespace

namespace {

// bf16 autocast: the forward runs in bf16, the weights and AdamW moments stay fp32
// masters, and the run still trains (and tracks the fp32 run's first loss).
TEST(Precision, Bf16AutocastKeepsFp32Masters) {
  auto c32 = tiny(fresh_dir("fp32"));
  auto c16 = tiny(fresh_dir("bf16"));
  c16.precision = Precision::kBf16;
  c16.model.chunk_size = 8;
  c32.model.chunk_size = 8;
  c16.seq_len = c32.seq_len = 80;  // > 64: the chunked GSA path
  auto r32 = run(c32, nullptr);
  auto r16 = run(c16, nullptr);
  EXPECT_NEAR(r16.records[0].loss, r32.records[0].loss, 0.02 * r32.records[0].loss);
  EXPECT_LT(r16.records.back().loss, r16.records.front().loss);
  std::ifstream in(r16.last_checkpoint, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto root = torch::pickle_load(bytes).toGenericDict();
  for (const auto& kv : root.at("model").toGenericDict())
    EXPECT_EQ(kv.value().toTensor().scalar_type(), torch::kFloat) << kv.key().toStringRef();
  for (const auto& kv : root.at("optimizer").toGenericDict().at("exp_avg_sq").toGenericDict())
    EXPECT_EQ(kv.value().toTensor().scalar_type(), torch::kFloat) << kv.key().toStringRef();
}

}  // namespace
