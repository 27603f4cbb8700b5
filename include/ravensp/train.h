// The train room: what ravensp-train runs (DESIGN.md §7). Options (Boost.Program_options:
// config file + command-line overrides), data (built-in MQAR, token files, raw text),
// AdamW with warmup+cosine, chunked cross-entropy, the DP x SP mesh, atomic
// checkpoints with exact resume, and per-step metrics. Depends on model and comm.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ravensp/comm.h"
#include "ravensp/model.h"

namespace ravensp::train {

enum class DataKind { kMqar, kTokens, kText };
enum class Precision { kFp32, kBf16, kFp64 };

struct TrainConfig {
  model::ModelConfig model;
  // data
  DataKind data = DataKind::kMqar;
  std::string data_path;              // tokens/text
  std::string token_dtype = "uint16"; // tokens: uint16 | uint32
  int64_t mqar_pairs = 8;             // key-value pairs per sequence
  // batch: global tokens per step = seq_len * micro_batch * grad_accum * dp_size
  int64_t seq_len = 2048;
  int64_t micro_batch = 1;  // sequences per data-parallel rank per micro-step
  int64_t grad_accum = 1;
  int64_t steps = 100;
  // optimizer and schedule
  double lr = 3e-4;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 10;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95, adam_eps = 1e-8;
  double grad_clip = 1.0;  // <= 0: off
  // compute
  Precision precision = Precision::kBf16;
  bool checkpoint_blocks = false;
  bool offload_checkpoints = false;  // with checkpoint_blocks: block inputs in host memory
  int64_t loss_chunk = 4096;  // tokens per cross-entropy chunk
  std::string device = "auto";  // auto | cpu | cuda
  int64_t threads = 0;          // CPU intra-op threads; 0: torch's default
  uint64_t seed = 1234;
  // parallelism
  int64_t sp_size = 1;
  sp::Layout layout = sp::Layout::kZigzag;
  sp::StateExchange exchange = sp::StateExchange::kLasp2;
  // output
  std::string out_dir = "runs/default";
  int64_t ckpt_every = 0;  // 0: only at the end
  bool save_final = true;
  std::string resume = "auto";  // auto (latest in out_dir, if any) | none | <path>
  std::string init_from;        // weights only (e.g. written by Python), no optimizer
  std::string progress = "auto";  // auto (on a terminal) | on | off
  bool json_stdout = false;       // also print each JSON record on stdout
  double peak_tflops = 0;         // MFU denominator per GPU; 0: 989 on CUDA, no MFU on CPU
  std::string config_text;        // the resolved options, stored in checkpoints
};

// Parses argv (a config file via --config plus overrides). Returns nullopt after
// printing --help; throws ravensp::Error with every problem found (unknown or
// invalid options, missing files, inconsistent sizes) before any work starts.
// world_size, when known, lets the checks cover sp_size against the ranks.
std::optional<TrainConfig> parse_options(int argc, const char* const* argv, int world_size = 0,
                                         std::ostream* help_out = nullptr);
std::string help_text();
// Consistency checks that need only the config (and the world size when > 0).
std::vector<std::string> config_problems(const TrainConfig& cfg, int world_size);

struct StepRecord {
  int64_t step = 0;  // 1-based optimizer step
  double loss = 0;
  double accuracy = -1;  // MQAR recall (else next-token accuracy) on this step's targets
  double lr = 0;
  double grad_norm = 0;
  double step_s = 0;
  double tokens_per_s_per_gpu = 0;
  double mfu = -1;  // < 0: not reported (CPU without --log.peak_tflops)
  double peak_mem_gb = 0;
  double comm_ms = 0;
  std::string to_json() const;
};

struct RunResult {
  std::vector<StepRecord> records;  // steps run by this call (after any resume)
  int64_t start_step = 0;           // the step resumed from (0: fresh)
  int64_t params = 0;
  std::string last_checkpoint;
};

// Trains. `world` may be null (one process). Every rank calls it with the same config.
RunResult run(const TrainConfig& cfg, std::shared_ptr<comm::Communicator> world);

// The communicator the launch environment asks for: null for a lone process,
// MPI under mpirun/srun, TCP under torchrun.
std::shared_ptr<comm::Communicator> init_world_from_env();

}  // namespace ravensp::train
