// The bench room: ravensp-bench's sweep driver (SP GSA with LASP-2/LASP-1, ring
// attention, a hybrid block, the whole training step), its record schema (JSON and
// CSV), the FLOP counts it reports, and the analytic scaling model that predicts
// step time and efficiency past the GPUs measured (DESIGN.md §8, docs/scaling_model.md).
// Depends on train (public header), model, sp and comm.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ravensp/comm.h"
#include "ravensp/train.h"

namespace ravensp::bench {

// Bumped whenever a record field is renamed, removed or changes meaning.
inline constexpr int kSchemaVersion = 1;
inline constexpr const char* kSchemaName = "ravensp-bench";

// ---- FLOP counts (forward; x3 for fwd+bwd of GSA, x3.5 for attention) ------
// Chunked GSA forward per the algorithm the kernels run (chunk C): intra-chunk
// q k^T (C*K) and p s^T pairs (C*M), the scores q Hk (K*M), the output p Hv (M*V),
// the intra A2 v (C*V) and the chunk's state updates (K*M + M*V); 2 FLOPs per
// multiply-add. Same count as python/ravensp/bench/kernels.py:flops_fwd.
double gsa_flops_fwd(int64_t B, int64_t H, int64_t K, int64_t V, int64_t M, int64_t T,
                     int64_t chunk = 64);
// Softmax attention forward, QK^T and PV: 4*B*Tq*Tk*H*D, halved when causal
// (Tq == Tk). Ring and SDPA benchmarks count fwd+bwd as 3.5x this (bwd = 2.5x).
double attention_flops_fwd(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, bool causal);
inline constexpr double kGsaFwdBwdFactor = 3.0;
inline constexpr double kAttnFwdBwdFactor = 3.5;

// ---- records ------------------------------------------------------------------
// One measured point: one workload at one total length on `world_size` ranks.
// Times are the median over repeats of the slowest rank's time.
struct Record {
  std::string what;      // sp_gsa_lasp2 | sp_gsa_lasp1 | ring_attention | hybrid_block | train_step
  std::string status = "ok";  // ok | oom | error
  std::string error;     // the message when status != ok
  int world_size = 1;    // ranks in the SP group
  int64_t seq_len = 0;   // total tokens of the sequence
  int64_t tokens_per_rank = 0;
  int64_t batch = 1;
  std::string layout;    // zigzag | contiguous
  std::string dtype;     // fp32 | bf16 | fp64
  std::string device;    // cpu | cuda
  int repeats = 0, warmup = 0;
  double step_ms = 0;       // median of the slowest rank's fwd+bwd (or train step)
  double step_ms_min = 0, step_ms_max = 0;
  double local_ms = -1;     // the same rank's work with the exchange skipped (< 0: none)
  double exposed_comm_ms = 0;
  std::string exposed_comm_method;  // baseline_difference | host_time_in_collectives
  double comm_host_ms = 0;  // wall time inside communicator calls (median)
  double comm_share = 0;    // exposed_comm_ms / step_ms
  double tokens_per_s_per_rank = 0;
  double flops_per_rank = 0;  // model FLOPs of one step on one rank (fwd+bwd)
  double tflops_per_rank = 0;
  double peak_mem_gb = 0;     // CUDA: allocator peak; CPU: peak RSS (VmHWM) of the point
  std::string mem_kind;       // cuda_peak_allocated | cpu_peak_rss
};

// Where and with what the run happened.
struct RunMeta {
  std::string machine, hostname, date;  // date: ISO 8601 UTC
  std::string ravensp_version, torch_version, cuda_version, nccl_version, backend;
  int world_size = 1;
  int threads = 0;
  std::string command;
};
RunMeta collect_meta(const std::string& device, const std::string& backend, int world_size);

std::string to_json(const Record& r);
std::string to_json(const RunMeta& m);
// {"schema": ..., "schema_version": 1, "meta": {...}, "records": [...]}
std::string document_json(const RunMeta& m, const std::vector<Record>& records);
// One header line and one line per record; meta columns repeated on every row.
std::vector<std::string> csv_columns();
std::string csv_row(const RunMeta& m, const Record& r);
void write_json(const std::string& path, const RunMeta& m, const std::vector<Record>& records);
void write_csv(const std::string& path, const RunMeta& m, const std::vector<Record>& records);

// ---- the driver -------------------------------------------------------------
struct Options {
  std::vector<std::string> what{"sp_gsa_lasp2"};
  std::vector<int64_t> seq_lens;  // total tokens; empty: powers of two seq_min..seq_max
  int64_t seq_min = 4096, seq_max = 1 << 20;
  int repeats = 5, warmup = 2;
  std::string dtype = "bf16";     // fp32 | bf16 | fp64
  std::string device = "auto";    // auto | cpu | cuda
  std::string layout = "zigzag";
  int threads = 0;                // CPU intra-op threads; 0: torch's default
  std::string model_config;       // a ravensp-train config file for the shapes
  std::vector<std::string> set;   // ravensp-train overrides, "model.num_slots=256"
  std::string out_json, out_csv;
  bool predict = false;           // print the scaling model instead of measuring
  std::string predict_json;       // where --predict writes its JSON (optional)
  std::string command;            // argv joined, for the record
  train::TrainConfig train;       // resolved from model_config + set
};
// Parses argv (a --config file of bench options plus overrides). nullopt after
// --help; throws ravensp::Error listing every problem.
std::optional<Options> parse_options(int argc, const char* const* argv, std::ostream* help_out = nullptr);
std::vector<int64_t> sweep_lengths(const Options& o);  // validated, ascending
bool valid_what(const std::string& w);

// Runs the sweep on this process's ranks (world may be null: one process). Every
// rank returns the same records; points that do not fit end as status "oom".
// on_point, when given, sees the records so far after every point (rank 0 writes
// them there, so a sweep stopped at a time limit keeps what it measured).
using PointCallback = std::function<void(const std::vector<Record>&)>;
std::vector<Record> run(const Options& o, std::shared_ptr<comm::Communicator> world,
                        const PointCallback& on_point = {});


// ---- the analytic scaling model (csrc/bench/scaling_model.cpp) ---------------
namespace scaling {

// Time of one ring step (one rank's piece to its neighbour) against the bytes
// each rank contributes: bus bandwidth interpolated linearly in log(bytes)
// between measured points, a constant time below the first, the last bandwidth
// above the last. A ring all-gather of P ranks takes P-1 such steps.
struct CurvePoint {
  double bytes;
  double gbps;
};
class BandwidthCurve {
 public:
  explicit BandwidthCurve(std::vector<CurvePoint> points);
  double gbps(double bytes) const;
  double step_seconds(double bytes) const;  // bytes / gbps(bytes), floored at the first point's time
  const std::vector<CurvePoint>& points() const { return points_; }

 private:
  std::vector<CurvePoint> points_;
};

// DEVICE.md's NCCL all-gather ceilings (2 GPUs, NVLink): 38 us at 64 KiB, 28 GB/s
// at 1 MiB, 184 at 16 MiB, 256 at 256 MiB (bytes contributed per rank).
BandwidthCurve device_md_allgather();

struct Cluster {
  BandwidthCurve allgather = device_md_allgather();
  double p2p_gbps = 300;        // DEVICE.md point-to-point ceiling (256 MiB)
  double allgather_peak_gbps = 256;
  int gpus_per_node = 8;
  double internode_gbps = 50;   // one 400 Gb/s NIC per GPU (an assumption, not measured)
};
// Ring all-gather of `bytes_per_rank` over P ranks: (P-1) steps; a ring spanning
// nodes runs at most at internode_gbps.
double allgather_seconds(const Cluster& c, double bytes_per_rank, int P);
// One point-to-point hop: the all-gather step curve scaled to the p2p ceiling.
double p2p_seconds(const Cluster& c, double bytes, bool crosses_node);
// Ring all-reduce (reduce-scatter + all-gather) of `bytes` over P ranks.
double allreduce_seconds(const Cluster& c, double bytes, int P);

// The model whose step is predicted (hybrid-340M by default).
struct Shape {
  int layers = 24, attn_layers = 4;  // attn_layers of `layers` are softmax attention
  int hidden = 1024, heads = 4, head_k = 256, head_v = 256, slots = 64, batch = 1;
  int attn_heads = 16, attn_kv_heads = 4, attn_head_dim = 64;
  double params = 373e6;
  bool recompute = true;  // activation checkpointing per block: one more forward
  int segments_per_rank = 2;  // zigzag
};
// fp32 bytes each rank contributes to one LASP-2 all-gather of one layer:
// segments * B*H*(K*M + M*V + M) * 4 (docs/algorithms.md).
double lasp2_state_bytes(const Shape& s);

// Compute costs measured on one H100 (docs/benchmarks/*.json, docs/launcher.md,
// DEVICE.md); see docs/scaling_model.md for where each number comes from.
struct Calibration {
  // sp_gsa_h100.json (one H100, 2026-11-26, this session's kernels), gpus = 1, LASP-2.
  std::vector<double> raven_tokens{65536, 262144, 524288};
  std::vector<double> raven_ms_local{42.038, 151.558, 297.641};  // ms_fwd_bwd_without_sp
  std::vector<double> raven_ms_sp{43.612, 156.425, 306.052};     // ms_fwd_bwd (SP path)
  // kernels.json (one H100, 2026-11-26, this session's kernels): ravensp chunk_gsa
  // fwd+bwd (fwdbwd_ms) at B1 H4 K=V=256 T=32768, M=256 minus M=64, per token.
  double m256_extra_us_per_token = (24.0604 - 5.7039) * 1e3 / 32768;
  double attn_tflops = 423;  // DEVICE.md: cuDNN causal fwd+bwd, head dim 64
  // docs/launcher.md: hybrid-340M step on one H100 (recompute on), seconds.
  std::vector<double> train_tokens{32768, 131072, 262144};
  std::vector<double> train_step_s{1.31, 5.58, 14.03};
  // The plain Raven layer those steps ran (one H100, the kernels of their day:
  // sp_gsa.json's ms_fwd_bwd_without_sp at commit b4f3257) at raven_tokens. The rest
  // of the step is what the steps leave after this layer; subtracting today's faster
  // layer instead charged the old layer's extra time to every token of the rest.
  std::vector<double> train_raven_ms_local{56.445, 206.812, 407.078};
  double overlap_fraction = 0.5;  // share of a pass that can hide a LASP-2 all-gather
  // Two GPUs (sp_gsa.json, gpus = 2; two H200s, the only two-GPU machine lent when
  // it was measured): LASP-2's exposed time per Raven layer fwd+bwd (2-rank minus
  // 1-rank SP time) at 64K, 256K, 512K tokens per GPU. Its median over the layer's
  // two all-gathers, beyond the bandwidth model's, is a fixed cost per exchange that
  // no overlap hides (launch latency, rank skew). With the exchange on a side stream
  // under the split passes it is rank skew and timing noise (two H100s, before: -0.04,
  // 0.53, -0.12 ms; with the handshake over NCCL 0.27, 0.93, 0.79 ms).
  std::vector<double> lasp2_exposed_ms_2gpu{0.312, 0.327, 1.804};
};
// Seconds one SP exchange (one all-gather, or one LASP-1 chain) costs beyond the
// bandwidth model: the measured two-GPU exposure minus the modelled all-gathers.
// Derived at the benchmark's layer shape (Shape{}: hidden 1024, H=4, K=V=256, M=64).
double exchange_sync_s(const Calibration& c, const Cluster& cl);

// Raven layer fwd+bwd ms on one GPU at `tokens` per GPU, interpolated piecewise
// linearly through the calibration points (proportional below the first, the
// last slope above the last); sp_path picks the LASP-2 path's times.
double raven_layer_ms(const Calibration& c, const Shape& s, double tokens, bool sp_path);
// Causal attention fwd+bwd seconds of one layer on one rank: 1/P of the
// sequence's causal FLOPs (zigzag balances them) at attn_tflops.
double attention_layer_s(const Calibration& c, const Shape& s, double total_tokens, int P);
// Seconds per token of everything else in a step (MLPs, projections, norms, the
// LM head, the optimizer): least squares over the measured one-GPU steps of the
// remainder after the Raven layers that ran in them (train_raven_ms_local) and the
// attention layers, on the measured model (hybrid-340M, M=64) whatever the shape
// argument.
double rest_s_per_token(const Calibration& c, const Shape& s);

enum class Scheme { kLasp2Overlap, kLasp2, kLasp1, kRing };
const char* scheme_name(Scheme x);
enum class ComputeMode { kTarget, kToday };  // Raven layer without / with today's SP-path cost
const char* compute_mode_name(ComputeMode m);

struct Prediction {
  Scheme scheme;
  ComputeMode mode;
  int gpus = 1;
  double seq_len = 0, tokens_per_gpu = 0;
  double raven_s = 0, attn_s = 0, rest_s = 0;   // compute per step on one rank
  double exchange_s = 0;        // communication time of the SP exchanges (all of it)
  double exposed_s = 0;         // the part not hidden behind compute
  double grad_allreduce_s = 0;  // one fp32 gradient all-reduce per step
  double step_s = 0;
  double tokens_per_s_per_gpu = 0;
  double efficiency = 0;        // compute / step: 1 means communication costs nothing
  std::string to_json() const;
};
Prediction predict(const Shape& s, const Calibration& c, const Cluster& cl, Scheme scheme,
                   ComputeMode mode, int gpus, double seq_len);
// Wire time of one exchange of one Raven layer over P ranks, without the fixed
// exchange_sync_s: LASP-2 (either variant) one all-gather of lasp2_state_bytes,
// LASP-1 its serial hop chain. What predict charges per exchange, and what an op
// too short to hide anything exposes.
double exchange_seconds(const Cluster& cl, const Shape& s, Scheme scheme, int P);

}  // namespace scaling

// --predict: the tables of docs/scaling_model.md (stdout) and, when path is set,
// every prediction as JSON for plot.py.
void print_predictions(std::ostream& out, const std::string& json_path);

}  // namespace ravensp::bench
