// Data: MQAR sequences have the promised structure and are a pure function of
// (seed, index); each SP rank's shard (both layouts) is exactly its part of the
// whole sequence; token and text files read back the file's tokens.
#include <gtest/gtest.h>

#include <fstream>

#include "train/data.h"

namespace {

using namespace ravensp::train;

TEST(Mqar, KeysValuesAndQueries) {
  MqarSource src(32, 64, 5, 7);
  std::vector<int64_t> tok, tok2;
  std::vector<uint8_t> scored, scored2;
  src.generate(3, tok, scored);
  src.generate(3, tok2, scored2);
  EXPECT_EQ(tok, tok2) << "a sequence is a function of (seed, index)";
  src.generate(4, tok2, scored2);
  EXPECT_NE(tok, tok2);
  ASSERT_EQ(tok.size(), 65u);
  // The last 2n tokens: key, value pairs; the values are the scored targets and
  // each query key's value is the one it had in the context.
  std::map<int64_t, int64_t> context_value;
  for (int64_t i = 0; i + 1 < 65 - 10; ++i)
    if (tok[i] >= 1 && tok[i] < 16) context_value[tok[i]] = tok[i + 1];
  EXPECT_EQ(context_value.size(), 5u);
  int n_scored = 0;
  for (int64_t i = 55; i < 65; i += 2) {
    EXPECT_TRUE(tok[i] >= 1 && tok[i] < 16);
    EXPECT_TRUE(tok[i + 1] >= 16 && tok[i + 1] < 32);
    EXPECT_EQ(context_value.at(tok[i]), tok[i + 1]);
    EXPECT_TRUE(scored[i + 1]);
    ++n_scored;
  }
  int total = 0;
  for (auto s : scored) total += s;
  EXPECT_EQ(total, n_scored);
}

void check_shards(const DataSource& src, int64_t T) {
  auto full = make_micro_batch(src, 2, 1, 2, 3, torch::arange(T));
  for (auto layout : {ravensp::sp::Layout::kContiguous, ravensp::sp::Layout::kZigzag}) {
    for (int P : {2, 4}) {
      int64_t scored = 0;
      for (int r = 0; r < P; ++r) {
        auto pos = ravensp::sp::global_positions(layout, r, P, T / P);
        auto mb = make_micro_batch(src, 2, 1, 2, 3, pos);
        EXPECT_TRUE(mb.inputs.equal(full.inputs.index_select(1, pos)));
        EXPECT_TRUE(mb.targets.equal(full.targets.index_select(1, pos)));
        EXPECT_TRUE(mb.rows.equal(full.rows));
        scored += mb.scored;
      }
      EXPECT_EQ(scored, full.scored);
    }
  }
  // Rows are global sequence indices: (micro * dp_size + dp_rank) * B + b.
  EXPECT_EQ(full.rows[0].item<int64_t>(), (2 * 2 + 1) * 3);
}

TEST(Sharding, EveryRankReadsExactlyItsShard) {
  MqarSource src(32, 64, 5, 7);
  check_shards(src, 64);
}

TEST(TokenFile, Uint16AndTextReadTheFile) {
  const std::string path = ::testing::TempDir() + "tok16.bin";
  std::vector<uint16_t> toks(1000);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<uint16_t>((i * 7919) % 50000);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(toks.data()), 2000);
  TokenFileSource src(path, 2, 64, 50000);
  EXPECT_EQ(src.num_sequences(), (1000 - 1) / 64);
  std::vector<int64_t> pos{0, 5, 63}, in(3), tg(3);
  src.read(2, pos.data(), 3, in.data(), tg.data());
  EXPECT_EQ(in[1], toks[2 * 64 + 5]);
  EXPECT_EQ(tg[2], toks[2 * 64 + 64]);
  src.read(2 + src.num_sequences(), pos.data(), 3, in.data(), tg.data());  // wraps around
  EXPECT_EQ(in[1], toks[2 * 64 + 5]);
  check_shards(src, 64);
  TokenFileSource small_vocab(path, 2, 64, 100);
  EXPECT_THROW(small_vocab.read(1, pos.data(), 3, in.data(), tg.data()), ravensp::Error);

  const std::string text = ::testing::TempDir() + "text.txt";
  std::ofstream(text) << std::string(200, 'a') + "hello";
  TokenFileSource bytes(text, 1, 64, 256);
  std::vector<int64_t> p2{0}, i2(1), t2(1);
  bytes.read(0, p2.data(), 1, i2.data(), t2.data());
  EXPECT_EQ(i2[0], 'a');
}

}  // namespace
