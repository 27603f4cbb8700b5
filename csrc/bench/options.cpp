// ravensp-bench's options (Boost.Program_options: an INI file via --config plus
// command-line overrides). Model shapes come from a ravensp-train config file,
// parsed by the train room's own parser so both tools read the same files.
#include <boost/program_options.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "ravensp/bench.h"

namespace po = boost::program_options;

namespace ravensp::bench {
namespace {

const char* const kWhat[] = {"sp_gsa_lasp2", "sp_gsa_lasp1", "ring_attention", "hybrid_block", "train_step"};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a != std::string::npos) out.push_back(item.substr(a, b - a + 1));
  }
  return out;
}

po::options_description describe(Options& o, std::string& what, std::string& seq) {
  po::options_description d{"ravensp-bench options (config-file keys are the same names)"};
  d.add_options()
    ("what", po::value(&what)->default_value("sp_gsa_lasp2"),
     "comma list of: sp_gsa_lasp2, sp_gsa_lasp1, ring_attention, hybrid_block, train_step")
    ("seq", po::value(&seq)->default_value(""), "comma list of total sequence lengths (overrides seq_min/seq_max)")
    ("seq_min", po::value(&o.seq_min)->default_value(4096), "smallest total length of the power-of-two sweep")
    ("seq_max", po::value(&o.seq_max)->default_value(1 << 20), "largest total length of the sweep")
    ("repeats", po::value(&o.repeats)->default_value(5), "timed repetitions per point (median reported)")
    ("warmup", po::value(&o.warmup)->default_value(2), "untimed repetitions before them")
    ("dtype", po::value(&o.dtype)->default_value("bf16"), "fp32 | bf16 | fp64")
    ("device", po::value(&o.device)->default_value("auto"), "auto | cpu | cuda (auto: cuda when visible)")
    ("layout", po::value(&o.layout)->default_value("zigzag"), "zigzag | contiguous")
    ("threads", po::value(&o.threads)->default_value(0), "CPU intra-op threads per rank (0: torch's default)")
    ("model_config", po::value(&o.model_config)->default_value(""),
     "a ravensp-train config file giving the model shapes (default: ravensp-train's defaults)")
    ("set", po::value(&o.set)->composing(), "a ravensp-train override, e.g. --set model.num_slots=256 (repeatable)")
    ("json", po::value(&o.out_json)->default_value(""), "write the records as JSON here (rank 0)")
    ("csv", po::value(&o.out_csv)->default_value(""), "write the records as CSV here (rank 0)")
    ("predict", po::bool_switch(&o.predict), "print the analytic scaling model's predictions; measure nothing")
    ("predict_json", po::value(&o.predict_json)->default_value(""), "with --predict: the prediction grid as JSON");
  return d;
}

}  // namespace

bool valid_what(const std::string& w) {
  for (const char* k : kWhat)
    if (w == k) return true;
  return false;
}

std::vector<int64_t> sweep_lengths(const Options& o) {
  std::vector<int64_t> out = o.seq_lens;
  if (out.empty()) {
    RAVENSP_CHECK(o.seq_min > 0 && o.seq_min <= o.seq_max, "seq_min must be in (0, seq_max], got seq_min=",
                  o.seq_min, " seq_max=", o.seq_max);
    for (int64_t t = o.seq_min; t <= o.seq_max; t *= 2) out.push_back(t);
  }
  for (int64_t t : out) RAVENSP_CHECK(t > 0, "sequence lengths must be positive, got ", t);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<Options> parse_options(int argc, const char* const* argv, std::ostream* help_out) {
  Options o;
  std::string what, seq, config;
  auto desc = describe(o, what, seq);
  po::options_description top;
  top.add_options()("help", "")("config", po::value(&config), "");
  po::options_description all;
  all.add(top).add(desc);
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, all), vm);
    if (vm.count("config")) {
      std::ifstream in(vm["config"].as<std::string>());
      RAVENSP_CHECK(in, "--config ", vm["config"].as<std::string>(), ": cannot open");
      po::store(po::parse_config_file(in, desc), vm);  // the command line wins: stored first
    }
    po::notify(vm);
  } catch (const po::error& e) {
    RAVENSP_CHECK(false, "ravensp-bench: ", e.what(), " (see --help)");
  }
  if (vm.count("help")) {
    (help_out ? *help_out : std::cout) << "usage: ravensp-bench [--config FILE] [--key=value ...]\n"
                                       << "  --config FILE   INI file of the options below\n" << desc;
    return std::nullopt;
  }
  std::vector<std::string> problems;
  o.what = split(what);
  if (o.what.empty()) problems.push_back("--what is empty");
  for (const auto& w : o.what)
    if (!valid_what(w)) problems.push_back("--what=" + w + " is not supported; supported: sp_gsa_lasp2, "
                                           "sp_gsa_lasp1, ring_attention, hybrid_block, train_step");
  for (const auto& s : split(seq)) {
    try {
      size_t used = 0;
      o.seq_lens.push_back(std::stoll(s, &used));
      if (used != s.size()) throw std::invalid_argument(s);
    } catch (const std::exception&) {
      problems.push_back("--seq: '" + s + "' is not an integer");
    }
  }
  if (o.dtype != "fp32" && o.dtype != "bf16" && o.dtype != "fp64")
    problems.push_back("--dtype=" + o.dtype + " is not supported; supported: fp32, bf16, fp64");
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
    problems.push_back("--device=" + o.device + " is not supported; supported: auto, cpu, cuda");
  if (o.layout != "zigzag" && o.layout != "contiguous")
    problems.push_back("--layout=" + o.layout + " is not supported; supported: zigzag, contiguous");
  if (o.repeats < 1) problems.push_back("--repeats must be >= 1, got " + std::to_string(o.repeats));
  if (o.warmup < 0) problems.push_back("--warmup must be >= 0, got " + std::to_string(o.warmup));
  if (!o.predict) {
    try {
      sweep_lengths(o);
    } catch (const Error& e) {
      problems.push_back(e.what());
    }
  }
  // The model shapes: ravensp-train's parser, with data that needs no files.
  std::vector<std::string> targs{"ravensp-bench"};
  if (!o.model_config.empty()) targs.insert(targs.end(), {"--config", o.model_config});
  targs.push_back("--data.kind=mqar");
  targs.push_back("--output.progress=off");
  for (const auto& s : o.set) targs.push_back("--" + s);
  std::vector<const char*> tv;
  for (const auto& a : targs) tv.push_back(a.c_str());
  try {
    auto tc = train::parse_options(static_cast<int>(tv.size()), tv.data());
    if (tc) o.train = *tc;
  } catch (const std::exception& e) {
    problems.push_back(std::string("model config: ") + e.what());
  }
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);
  if (!problems.empty()) {
    std::ostringstream os;
    for (const auto& p : problems) os << "\n  " << p;
    RAVENSP_CHECK(false, "ravensp-bench: invalid options:", os.str());
  }
  return o;
}

}  // namespace ravensp::bench
