// Every check ravensp-train makes before any work: enum-like values, sizes that
// must divide, files that must exist and be large enough. Each problem is one
// line naming the option and both values; all are reported together.
#include <sys/stat.h>

#include <sstream>

#include "ravensp/train.h"
#include "train/option_values.h"

namespace ravensp::train {
namespace {

template <typename... P>
std::string cat(const P&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

int64_t file_size(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

}  // namespace

void parse_raw_values(const std::string& data, const std::string& precision,
                      const std::string& layout, const std::string& exchange,
                      const std::string& attn_layers, TrainConfig& cfg,
                      std::vector<std::string>& problems) {
  if (data == "mqar") cfg.data = DataKind::kMqar;
  else if (data == "tokens") cfg.data = DataKind::kTokens;
  else if (data == "text") cfg.data = DataKind::kText;
  else problems.push_back(cat("data.kind=", data, " is not supported; supported: mqar, tokens, text"));

  if (precision == "bf16") cfg.precision = Precision::kBf16;
  else if (precision == "fp32") cfg.precision = Precision::kFp32;
  else if (precision == "fp64") cfg.precision = Precision::kFp64;
  else problems.push_back(cat("train.precision=", precision, " is not supported; supported: bf16, fp32, fp64"));

  if (layout == "zigzag") cfg.layout = sp::Layout::kZigzag;
  else if (layout == "contiguous") cfg.layout = sp::Layout::kContiguous;
  else problems.push_back(cat("parallel.layout=", layout, " is not supported; supported: contiguous, zigzag"));

  if (exchange == "lasp2") cfg.exchange = sp::StateExchange::kLasp2;
  else if (exchange == "lasp1") cfg.exchange = sp::StateExchange::kLasp1;
  else problems.push_back(cat("parallel.exchange=", exchange, " is not supported; supported: lasp2, lasp1"));

  cfg.model.attn_layers.clear();
  std::stringstream ss(attn_layers);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      size_t used = 0;
      int64_t v = std::stoll(item, &used);
      if (item.find_first_not_of(" \t", used) != std::string::npos) throw std::invalid_argument(item);
      cfg.model.attn_layers.push_back(v);
    } catch (const std::exception&) {
      problems.push_back(cat("model.attn_layers: '", item, "' is not an integer (expected e.g. 5,11,17)"));
    }
  }
}

std::vector<std::string> config_problems(const TrainConfig& c, int world_size) {
  std::vector<std::string> out = c.model.problems();
  auto bad = [&](bool cond, auto&&... parts) {
    if (cond) out.push_back(cat(parts...));
  };
  bad(c.seq_len < 2, "data.seq_len must be >= 2, got ", c.seq_len);
  bad(c.micro_batch < 1, "data.micro_batch must be >= 1, got ", c.micro_batch);
  bad(c.grad_accum < 1, "train.grad_accum must be >= 1, got ", c.grad_accum);
  bad(c.steps < 1, "train.steps must be >= 1, got ", c.steps);
  bad(!(c.lr > 0), "train.lr must be > 0, got ", c.lr);
  bad(c.min_lr_ratio < 0 || c.min_lr_ratio > 1, "train.min_lr_ratio must be in [0, 1], got ", c.min_lr_ratio);
  bad(c.warmup_steps < 0, "train.warmup_steps must be >= 0, got ", c.warmup_steps);
  bad(c.weight_decay < 0, "train.weight_decay must be >= 0, got ", c.weight_decay);
  bad(c.beta1 < 0 || c.beta1 >= 1 || c.beta2 < 0 || c.beta2 >= 1, "train.beta1/beta2 must be in [0, 1), got ",
      c.beta1, "/", c.beta2);
  bad(c.loss_chunk < 1, "train.loss_chunk must be >= 1, got ", c.loss_chunk);
  bad(c.offload_checkpoints && !c.checkpoint_blocks,
      "train.offload_checkpoints=true needs train.checkpoint_blocks=true (only recomputed blocks "
      "save a single input that can live in host memory)");
  bad(c.threads < 0, "train.threads must be >= 0, got ", c.threads);
  bad(c.device != "auto" && c.device != "cpu" && c.device != "cuda", "train.device=", c.device,
      " is not supported; supported: auto, cpu, cuda");
  bad(c.progress != "auto" && c.progress != "on" && c.progress != "off", "output.progress=",
      c.progress, " is not supported; supported: auto, on, off");
  bad(c.ckpt_every < 0, "output.ckpt_every must be >= 0, got ", c.ckpt_every);
  bad(c.out_dir.empty(), "output.dir must not be empty");

  // Sequence parallelism: the layout cuts the sequence into sp_size (contiguous)
  // or 2 * sp_size (zigzag) equal segments.
  bad(c.sp_size < 1, "parallel.sp_size must be >= 1, got ", c.sp_size);
  if (c.sp_size >= 1) {
    const int64_t pieces = c.sp_size * sp::segments_per_rank(c.layout);
    bad(c.sp_size > 1 && c.seq_len % pieces != 0, "data.seq_len=", c.seq_len,
        " must be divisible by ", pieces, " (parallel.sp_size=", c.sp_size, " with the ",
        sp::layout_name(c.layout), " layout)");
    bad(world_size > 0 && world_size % c.sp_size != 0, "parallel.sp_size=", c.sp_size,
        " must divide the number of ranks (", world_size, ")");
  }

  if (c.data == DataKind::kMqar) {
    // Keys come from [1, vocab/2), values from [vocab/2, vocab); 0 fills the context.
    bad(c.mqar_pairs < 1, "data.mqar_pairs must be >= 1, got ", c.mqar_pairs);
    bad(c.mqar_pairs > c.model.vocab_size / 2 - 1, "data.mqar_pairs=", c.mqar_pairs,
        " needs that many distinct keys in [1, vocab_size/2): model.vocab_size=",
        c.model.vocab_size, " is too small");
    bad(4 * c.mqar_pairs > c.seq_len, "data.seq_len=", c.seq_len, " is too short for ",
        c.mqar_pairs, " MQAR pairs (needs >= 4 * mqar_pairs = ", 4 * c.mqar_pairs, ")");
  } else {
    const int64_t width = c.data == DataKind::kText ? 1 : (c.token_dtype == "uint32" ? 4 : 2);
    bad(c.data == DataKind::kTokens && c.token_dtype != "uint16" && c.token_dtype != "uint32",
        "data.token_dtype=", c.token_dtype, " is not supported; supported: uint16, uint32");
    bad(c.data == DataKind::kText && c.model.vocab_size < 256,
        "data.kind=text needs model.vocab_size >= 256, got ", c.model.vocab_size);
    const int64_t size = c.data_path.empty() ? -1 : file_size(c.data_path);
    if (c.data_path.empty()) {
      out.push_back("data.path is required for data.kind=tokens/text");
    } else if (size < 0) {
      out.push_back(cat("data.path '", c.data_path, "' does not exist or is not a regular file"));
    } else {
      bad(size % width != 0, "data.path '", c.data_path, "' has ", size,
          " bytes, not a multiple of the token width ", width);
      bad(size / width < c.seq_len + 1, "data.path '", c.data_path, "' holds ", size / width,
          " tokens, fewer than data.seq_len + 1 = ", c.seq_len + 1);
    }
  }
  for (const auto& [name, path] : {std::pair<const char*, std::string>{"output.init_from", c.init_from},
                                   {"output.resume", c.resume}}) {
    if (path.empty() || path == "auto" || path == "none") continue;
    bad(file_size(path) < 0, name, " '", path, "' does not exist");
  }
  return out;
}

}  // namespace ravensp::train
