// ravensp-train's options: one table binds each option name to its TrainConfig
// field, its default and its help, and serves --help, parsing (config file, then
// command-line overrides) and the resolved config text stored in checkpoints.
#include <boost/program_options.hpp>

#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "ravensp/train.h"
#include "train/option_values.h"

namespace po = boost::program_options;

namespace ravensp::train {
namespace {

// Binds options to fields and remembers how to print each resolved value.
struct Table {
  po::options_description desc{"ravensp-train options (config-file keys are the same names, "
                               "grouped under [model], [data], [train], [parallel], [output])"};
  std::vector<std::pair<std::string, std::function<std::string()>>> printers;

  template <typename T>
  static std::string text(const T& v) {
    std::ostringstream os;
    os << std::boolalpha << v;  // 6 significant digits: 0.0003, not 0.000299999...
    return os.str();
  }

  template <typename T>
  void add(const char* name, T* field, const char* help) {
    desc.add_options()(name, po::value<T>(field)->default_value(*field, text(*field)), help);
    printers.emplace_back(name, [field] { return text(*field); });
  }
};

// String forms of the enum-like fields, parsed after Boost has filled them.
struct Raw {
  std::string data = "mqar", precision = "bf16", layout = "zigzag", exchange = "lasp2";
  std::string attn_layers;
};

void build(Table& t, TrainConfig& c, Raw& r) {
  auto& m = c.model;
  t.add("model.vocab_size", &m.vocab_size, "vocabulary size (text data: >= 256)");
  t.add("model.hidden_size", &m.hidden_size, "hidden size d");
  t.add("model.num_layers", &m.num_layers, "number of blocks");
  t.add("model.num_heads", &m.num_heads, "Raven heads H");
  t.add("model.num_kv_heads", &m.num_kv_heads, "Raven kv heads (0: num_heads)");
  t.add("model.num_slots", &m.num_slots, "slots M per head (0: head key dim)");
  t.add("model.topk", &m.topk, "slots written per token");
  t.add("model.expand_k", &m.expand_k, "key dim = hidden_size * expand_k");
  t.add("model.expand_v", &m.expand_v, "value dim = hidden_size * expand_v");
  t.add("model.decay_type", &m.decay_type, "Mamba2 | GLA");
  t.add("model.feature_map", &m.feature_map, "swish | relu | t2r");
  t.add("model.router_score", &m.router_score, "sigmoid | softmax");
  t.add("model.router_type", &m.router_type, "lin | mlp");
  t.add("model.bias_rmm", &m.bias_rmm, "learned router selection bias r_bias");
  t.add("model.add_gumbel_noise", &m.add_gumbel_noise, "Gumbel noise on router logits in training");
  t.add("model.router_fp32", &m.router_fp32, "router logits in fp32 under bf16 autocast");
  t.add("model.use_output_gate", &m.use_output_gate, "o_gate_proj + gated o_norm instead of g_norm");
  t.add("model.use_rope", &m.use_rope, "RoPE on Raven q, k");
  t.add("model.gate_logit_normalizer", &m.gate_logit_normalizer, "GLA decay divisor");
  t.add("model.scale", &m.scale, "GSA scale (<= 0: head_k_dim^-0.5)");
  t.add("model.norm_eps", &m.norm_eps, "RMSNorm epsilon");
  t.add("model.chunk_size", &m.chunk_size, "GSA chunk length");
  t.add("model.intermediate_size", &m.intermediate_size, "MLP width (0: FLA default)");
  t.add("model.attn_layers", &r.attn_layers, "softmax-attention layer indices, e.g. 5,11,17,23");
  t.add("model.attn_num_heads", &m.attn_num_heads, "attention heads");
  t.add("model.attn_num_kv_heads", &m.attn_num_kv_heads, "attention kv heads (0: attn_num_heads)");
  t.add("model.attn_window", &m.attn_window, "sliding window (0: full causal)");
  t.add("model.rope_theta", &m.rope_theta, "RoPE base");
  t.add("model.tie_word_embeddings", &m.tie_word_embeddings, "lm_head shares the embedding");
  t.add("model.initializer_range", &m.initializer_range, "init std");
  t.add("data.kind", &r.data, "mqar | tokens | text");
  t.add("data.path", &c.data_path, "token file (tokens) or any file (text, bytes as tokens)");
  t.add("data.token_dtype", &c.token_dtype, "uint16 | uint32 (tokens)");
  t.add("data.mqar_pairs", &c.mqar_pairs, "MQAR key-value pairs per sequence");
  t.add("data.seq_len", &c.seq_len, "global sequence length (split over sp_size ranks)");
  t.add("data.micro_batch", &c.micro_batch, "sequences per data-parallel rank per micro-step");
  t.add("train.steps", &c.steps, "optimizer steps (total, counting resumed ones)");
  t.add("train.grad_accum", &c.grad_accum, "micro-steps per optimizer step");
  t.add("train.lr", &c.lr, "peak learning rate");
  t.add("train.min_lr_ratio", &c.min_lr_ratio, "final lr / peak lr of the cosine");
  t.add("train.warmup_steps", &c.warmup_steps, "linear warmup steps");
  t.add("train.weight_decay", &c.weight_decay, "AdamW decay (not on A_log, dt_bias, r_bias, norms, biases)");
  t.add("train.beta1", &c.beta1, "AdamW beta1");
  t.add("train.beta2", &c.beta2, "AdamW beta2");
  t.add("train.adam_eps", &c.adam_eps, "AdamW epsilon");
  t.add("train.grad_clip", &c.grad_clip, "global gradient-norm clip (<= 0: off)");
  t.add("train.precision", &r.precision, "bf16 (autocast, fp32 master) | fp32 | fp64");
  t.add("train.checkpoint_blocks", &c.checkpoint_blocks, "recompute each block in backward");
  t.add("train.offload_checkpoints", &c.offload_checkpoints,
        "keep the recomputed blocks' inputs in pinned host memory (needs train.checkpoint_blocks)");
  t.add("train.loss_chunk", &c.loss_chunk, "tokens per cross-entropy chunk");
  t.add("train.device", &c.device, "auto | cpu | cuda");
  t.add("train.threads", &c.threads, "CPU threads per rank (0: torch default)");
  t.add("train.seed", &c.seed, "seed of init, data and Gumbel noise");
  t.add("parallel.sp_size", &c.sp_size, "ranks per sequence-parallel group");
  t.add("parallel.layout", &r.layout, "contiguous | zigzag");
  t.add("parallel.exchange", &r.exchange, "lasp2 | lasp1 (Raven state exchange)");
  t.add("output.dir", &c.out_dir, "checkpoints and metrics.jsonl go here");
  t.add("output.ckpt_every", &c.ckpt_every, "checkpoint every N steps (0: only at the end)");
  t.add("output.save_final", &c.save_final, "checkpoint after the last step");
  t.add("output.resume", &c.resume, "auto | none | <checkpoint path>");
  t.add("output.init_from", &c.init_from, "load weights only from this checkpoint");
  t.add("output.progress", &c.progress, "auto | on | off (progress bar on stderr)");
  t.add("output.json_stdout", &c.json_stdout, "print each step's JSON record on stdout");
  t.add("output.peak_tflops", &c.peak_tflops, "per-device peak for MFU (0: 989 on CUDA)");
}

std::string join(const std::vector<std::string>& v) {
  std::ostringstream os;
  for (const auto& s : v) os << "\n  " << s;
  return os.str();
}

}  // namespace

std::string help_text() {
  TrainConfig c;
  Raw r;
  Table t;
  build(t, c, r);
  std::ostringstream os;
  os << "usage: ravensp-train [--config FILE] [--section.key=value ...]\n\n"
     << "  --config FILE   INI-style config file; command-line values override it\n"
     << "  --help          this text\n\n"
     << t.desc;
  return os.str();
}

std::optional<TrainConfig> parse_options(int argc, const char* const* argv, int world_size,
                                         std::ostream* help_out) {
  TrainConfig cfg;
  Raw raw;
  Table t;
  build(t, cfg, raw);
  po::options_description top;
  std::string config_file;
  top.add_options()("help", "")("config", po::value<std::string>(&config_file), "");
  top.add(t.desc);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(top).run(), vm);
    if (vm.count("help")) {
      (help_out ? *help_out : std::cout) << help_text();
      return std::nullopt;
    }
    if (vm.count("config")) {
      config_file = vm["config"].as<std::string>();
      std::ifstream in(config_file);
      RAVENSP_CHECK(in.good(), "config file '", config_file, "' cannot be read");
      // Stored after the command line, so command-line values win.
      po::store(po::parse_config_file(in, t.desc, /*allow_unregistered=*/false), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(std::string("ravensp-train: ") + e.what() +
                (config_file.empty() ? "" : " (config file '" + config_file + "')") +
                "; see --help");
  }
  std::vector<std::string> problems;
  parse_raw_values(raw.data, raw.precision, raw.layout, raw.exchange, raw.attn_layers, cfg,
                   problems);
  auto more = config_problems(cfg, world_size);
  problems.insert(problems.end(), more.begin(), more.end());
  RAVENSP_CHECK(problems.empty(), "ravensp-train: invalid configuration:", join(problems));
  std::ostringstream text;
  for (const auto& [name, print] : t.printers) text << name << " = " << print() << "\n";
  cfg.config_text = text.str();
  return cfg;
}

}  // namespace ravensp::train
