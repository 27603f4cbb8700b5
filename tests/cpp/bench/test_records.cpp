// The record schema (field names, order, types, version) in JSON and CSV, and
// the options parser's checks.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "ravensp/bench.h"

namespace rb = ravensp::bench;

namespace {

// The documented schema (docs/benchmarks.md): name and JSON type, in order.
const std::vector<std::pair<std::string, char>> kFields = {
    {"schema_version", 'i'}, {"what", 's'}, {"status", 's'}, {"error", 's'}, {"world_size", 'i'},
    {"seq_len", 'i'}, {"tokens_per_rank", 'i'}, {"batch", 'i'}, {"layout", 's'}, {"dtype", 's'},
    {"device", 's'}, {"repeats", 'i'}, {"warmup", 'i'}, {"step_ms", 'n'}, {"step_ms_min", 'n'},
    {"step_ms_max", 'n'}, {"local_ms", 'N'}, {"exposed_comm_ms", 'n'}, {"exposed_comm_method", 's'},
    {"comm_host_ms", 'n'}, {"comm_share", 'n'}, {"tokens_per_s_per_rank", 'n'}, {"flops_per_rank", 'n'},
    {"tflops_per_rank", 'n'}, {"peak_mem_gb", 'n'}, {"mem_kind", 's'}};

std::string value_re(char t) {
  switch (t) {
    case 'i': return "-?[0-9]+";
    case 's': return "\"(?:[^\"\\\\]|\\\\.)*\"";
    case 'N': return "(?:null|-?[0-9.eE+-]+)";
    default: return "-?[0-9.eE+-]+";
  }
}

rb::Record sample() {
  rb::Record r;
  r.what = "sp_gsa_lasp2";
  r.world_size = 2;
  r.seq_len = 1024;
  r.tokens_per_rank = 512;
  r.layout = "zigzag";
  r.dtype = "fp32";
  r.device = "cpu";
  r.step_ms = 12.5;
  r.local_ms = -1;
  r.error = "a \"quoted\", comma";
  return r;
}

}  // namespace

TEST(Records, JsonHasEveryFieldInOrderWithItsType) {
  std::string re = "\\{";
  for (size_t i = 0; i < kFields.size(); ++i)
    re += (i ? ", " : "") + std::string("\"") + kFields[i].first + "\": " + value_re(kFields[i].second);
  re += "\\}";
  const std::string j = rb::to_json(sample());
  EXPECT_TRUE(std::regex_match(j, std::regex(re))) << j;
  EXPECT_NE(j.find("\"schema_version\": " + std::to_string(rb::kSchemaVersion)), std::string::npos);
  EXPECT_NE(j.find("\"local_ms\": null"), std::string::npos);  // no baseline: null, not -1
  EXPECT_NE(j.find("\\\"quoted\\\""), std::string::npos);
}

TEST(Records, DocumentCarriesSchemaMetaAndRecords) {
  rb::RunMeta m = rb::collect_meta("cpu", "mpi", 2);
  EXPECT_FALSE(m.date.empty());
  EXPECT_FALSE(m.torch_version.empty());
  EXPECT_FALSE(m.ravensp_version.empty());
  const std::string d = rb::document_json(m, {sample(), sample()});
  EXPECT_EQ(d.rfind("{\"schema\": \"ravensp-bench\", \"schema_version\": 1,", 0), 0u) << d.substr(0, 80);
  EXPECT_NE(d.find("\"meta\": {\"machine\": "), std::string::npos);
  EXPECT_NE(d.find("\"records\": [\n  {"), std::string::npos);
  size_t n = 0;
  for (size_t p = d.find("\"what\""); p != std::string::npos; p = d.find("\"what\"", p + 1)) ++n;
  EXPECT_EQ(n, 2u);
}

TEST(Records, CsvRowsMatchTheHeader) {
  auto cols = rb::csv_columns();
  ASSERT_GE(cols.size(), kFields.size());
  for (size_t i = 0; i < kFields.size(); ++i) EXPECT_EQ(cols[i], kFields[i].first);
  const std::string row = rb::csv_row(rb::collect_meta("cpu", "none", 1), sample());
  // Count cells outside quotes: one per column.
  size_t cells = 1;
  bool quoted = false;
  for (char ch : row) {
    if (ch == '"') quoted = !quoted;
    else if (ch == ',' && !quoted) ++cells;
  }
  EXPECT_EQ(cells, cols.size()) << row;
  EXPECT_EQ(row.rfind("1,sp_gsa_lasp2,ok,\"a \"\"quoted\"\", comma\",2,1024,512,", 0), 0u) << row;
}

TEST(Options, DefaultsAndSweep) {
  const char* argv[] = {"ravensp-bench", "--what=ring_attention,sp_gsa_lasp1", "--seq_min=4096",
                        "--seq_max=32768", "--set", "model.num_slots=32"};
  auto o = rb::parse_options(6, argv);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->what, (std::vector<std::string>{"ring_attention", "sp_gsa_lasp1"}));
  EXPECT_EQ(rb::sweep_lengths(*o), (std::vector<int64_t>{4096, 8192, 16384, 32768}));
  EXPECT_EQ(o->train.model.num_slots, 32);
  const char* argv2[] = {"ravensp-bench", "--seq=1024,256"};
  EXPECT_EQ(rb::sweep_lengths(*rb::parse_options(2, argv2)), (std::vector<int64_t>{256, 1024}));
}

TEST(Options, EveryProblemIsNamed) {
  const char* argv[] = {"ravensp-bench", "--what=nope", "--dtype=fp8", "--seq=12x", "--repeats=0"};
  try {
    rb::parse_options(5, argv);
    FAIL() << "no error";
  } catch (const ravensp::Error& e) {
    const std::string m = e.what();
    for (const char* part : {"--what=nope", "--dtype=fp8", "'12x'", "--repeats must be >= 1"})
      EXPECT_NE(m.find(part), std::string::npos) << part << " missing from: " << m;
  }
  const char* bad_model[] = {"ravensp-bench", "--set", "model.hidden_size=100", "--set", "model.num_heads=3"};
  EXPECT_THROW(rb::parse_options(5, bad_model), ravensp::Error);
  std::ostringstream help;
  const char* h[] = {"ravensp-bench", "--help"};
  EXPECT_FALSE(rb::parse_options(2, h, &help));
  EXPECT_NE(help.str().find("--what"), std::string::npos);
}
