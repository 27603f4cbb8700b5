// ravensp-train's options: help lists defaults, the config file is read and the
// command line overrides it, and every kind of mistake fails before any work with
// a message naming the option.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "ravensp/train.h"

namespace {

using ravensp::train::parse_options;

std::optional<ravensp::train::TrainConfig> parse(std::vector<std::string> args, int world = 0) {
  args.insert(args.begin(), "ravensp-train");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  std::ostringstream help;
  return parse_options(static_cast<int>(argv.size()), argv.data(), world, &help);
}

std::string error_of(std::vector<std::string> args, int world = 0) {
  try {
    parse(std::move(args), world);
  } catch (const ravensp::Error& e) {
    return e.what();
  }
  return "";
}

std::string write_cfg(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Options, HelpListsEveryOptionWithItsDefault) {
  auto text = ravensp::train::help_text();
  for (const char* s : {"--model.hidden_size arg (=1024)", "--train.lr arg (=0.0003)",
                        "--parallel.sp_size arg (=1)", "--data.kind arg (=mqar)",
                        "--output.resume arg (=auto)"}) {
    EXPECT_NE(text.find(s), std::string::npos) << s;
  }
  EXPECT_FALSE(parse({"--help"}).has_value());
}

TEST(Options, ConfigFileThenCommandLineOverrides) {
  auto path = write_cfg("a.cfg", "[model]\nhidden_size = 64\nnum_heads = 2\n[train]\nlr = 0.01\n");
  auto cfg = parse({"--config", path, "--train.lr=0.5", "--model.attn_layers=1", "--model.num_layers=2"});
  ASSERT_TRUE(cfg.has_value());
  EXPECT_EQ(cfg->model.hidden_size, 64);
  EXPECT_EQ(cfg->lr, 0.5);
  EXPECT_EQ(cfg->model.attn_layers, std::vector<int64_t>{1});
  EXPECT_NE(cfg->config_text.find("model.hidden_size = 64"), std::string::npos);
}

TEST(Options, UnknownOptionsAreRejected) {
  EXPECT_NE(error_of({"--model.hiden_size=3"}).find("model.hiden_size"), std::string::npos);
  auto path = write_cfg("b.cfg", "[model]\nbogus = 1\n");
  auto e = error_of({"--config", path});
  EXPECT_NE(e.find("model.bogus"), std::string::npos) << e;
  EXPECT_NE(e.find("b.cfg"), std::string::npos) << e;
}

TEST(Options, InvalidValuesAreRejected) {
  EXPECT_NE(error_of({"--train.lr=fast"}).find("train.lr"), std::string::npos);
  EXPECT_NE(error_of({"--train.precision=fp8"}).find("train.precision=fp8"), std::string::npos);
  EXPECT_NE(error_of({"--parallel.layout=spiral"}).find("parallel.layout=spiral"), std::string::npos);
  EXPECT_NE(error_of({"--model.attn_layers=1,x"}).find("'x' is not an integer"), std::string::npos);
}

TEST(Options, MissingFilesAreRejected) {
  EXPECT_NE(error_of({"--config", "/nonexistent/x.cfg"}).find("/nonexistent/x.cfg"), std::string::npos);
  auto e = error_of({"--data.kind=tokens", "--data.path=/nonexistent/tokens.bin"});
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  EXPECT_NE(error_of({"--output.resume=/nonexistent/ckpt.pt"}).find("output.resume"), std::string::npos);
}

TEST(Options, InconsistentSizesAreRejectedTogether) {
  auto e = error_of({"--model.hidden_size=100", "--model.num_heads=3", "--parallel.sp_size=2",
                     "--data.seq_len=1030", "--parallel.layout=zigzag"}, 4);
  EXPECT_NE(e.find("model.num_heads=3 must divide"), std::string::npos) << e;
  EXPECT_NE(e.find("data.seq_len=1030 must be divisible by 4"), std::string::npos) << e;
  e = error_of({"--parallel.sp_size=3"}, 4);
  EXPECT_NE(e.find("must divide the number of ranks (4)"), std::string::npos) << e;
  e = error_of({"--model.vocab_size=8", "--data.mqar_pairs=8"});
  EXPECT_NE(e.find("data.mqar_pairs=8"), std::string::npos) << e;
  e = error_of({"--model.num_layers=4", "--model.attn_layers=4"});
  EXPECT_NE(e.find("model.attn_layers holds 4"), std::string::npos) << e;
  e = error_of({"--train.offload_checkpoints=true", "--train.checkpoint_blocks=false"});
  EXPECT_NE(e.find("train.offload_checkpoints=true needs train.checkpoint_blocks=true"), std::string::npos) << e;
  auto ok = parse({"--train.offload_checkpoints=true", "--train.checkpoint_blocks=true"});
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->offload_checkpoints);
}

TEST(Options, TokenFileSizeIsChecked) {
  auto path = write_cfg("tokens.bin", std::string(7, 'x'));  // odd byte count
  auto e = error_of({"--data.kind=tokens", "--data.path=" + path, "--data.seq_len=2"});
  EXPECT_NE(e.find("not a multiple of the token width 2"), std::string::npos) << e;
  e = error_of({"--data.kind=text", "--data.path=" + path, "--data.seq_len=64",
                "--model.vocab_size=256"});
  EXPECT_NE(e.find("fewer than data.seq_len + 1"), std::string::npos) << e;
}

}  // namespace
