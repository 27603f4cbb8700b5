// ravensp-bench --predict: the scaling model's tables (the numbers quoted in
// docs/scaling_model.md) and the prediction grid as JSON for plot.py.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "ravensp/bench.h"

namespace ravensp::bench {
namespace {

using namespace scaling;

constexpr double k2M = 2097152;
constexpr Scheme kSchemes[] = {Scheme::kLasp2Overlap, Scheme::kLasp2, Scheme::kLasp1, Scheme::kRing};

Shape hybrid(int slots) {
  Shape s;
  s.slots = slots;
  return s;
}
// The LASP-2 paper compares SP schemes on a model of linear layers only.
Shape raven_only(int slots) {
  Shape s = hybrid(slots);
  s.attn_layers = 0;
  s.params = 340e6;
  return s;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

void step_table(std::ostream& out, const char* title, const Shape& s, const Calibration& c,
                const Cluster& cl, ComputeMode mode) {
  out << "\n### " << title << " (compute: " << compute_mode_name(mode) << ")\n\n"
      << "| GPUs | tokens/GPU | scheme | compute s | exchange s | exposed s | grad all-reduce s | step s "
         "| tokens/s/GPU | efficiency |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (int P : {8, 16, 32, 64})
    for (Scheme x : {Scheme::kLasp2Overlap, Scheme::kLasp2, Scheme::kLasp1}) {
      auto p = predict(s, c, cl, x, mode, P, k2M);
      out << "| " << P << " | " << int64_t(p.tokens_per_gpu) << " | " << scheme_name(x) << " | "
          << fmt("%.3f", p.raven_s + p.attn_s + p.rest_s) << " | " << fmt("%.4f", p.exchange_s) << " | "
          << fmt("%.4f", p.exposed_s) << " | " << fmt("%.4f", p.grad_allreduce_s) << " | "
          << fmt("%.3f", p.step_s) << " | " << fmt("%.0f", p.tokens_per_s_per_gpu) << " | "
          << fmt("%.3f", p.efficiency) << " |\n";
    }
}

void paper_table(std::ostream& out, const Calibration& c, const Cluster& cl) {
  out << "\n### LASP-2 paper comparison: 2048K tokens on 64 GPUs, Raven layers only\n\n"
      << "Paper (Linear-Llama3-1B, A100): LASP-2 +15.2% throughput over LASP-1, +36.6% over ring.\n\n"
      << "| slots | compute | LASP-2 (overlap) s | LASP-2 s | LASP-1 s | ring s | LASP-2 vs LASP-1 | "
         "LASP-2 vs ring |\n|---:|---|---:|---:|---:|---:|---:|---:|\n";
  for (int M : {64, 256})
    for (ComputeMode mode : {ComputeMode::kTarget, ComputeMode::kToday}) {
      double t[4];
      for (int i = 0; i < 4; ++i) t[i] = predict(raven_only(M), c, cl, kSchemes[i], mode, 64, k2M).step_s;
      out << "| " << M << " | " << compute_mode_name(mode) << " | " << fmt("%.3f", t[0]) << " | "
          << fmt("%.3f", t[1]) << " | " << fmt("%.3f", t[2]) << " | " << fmt("%.3f", t[3]) << " | "
          << fmt("%+.1f%%", (t[2] / t[0] - 1) * 100) << " | " << fmt("%+.1f%%", (t[3] / t[0] - 1) * 100)
          << " |\n";
    }
}

// The one-GPU steps the rest of the step is fitted on: the fit itself (with the
// Raven layer those steps ran) and what the model now gives for them with today's
// faster layer.
void calibration_table(std::ostream& out, const Calibration& c) {
  const Shape s = hybrid(64);
  Calibration then = c;
  then.raven_ms_local = c.train_raven_ms_local;
  out << "\n### Calibration check: hybrid-340M step on one H100 (docs/launcher.md)\n\n"
      << "Rest of the step (MLPs, projections, head, optimizer): "
      << fmt("%.2f", rest_s_per_token(c, s) * 1e6) << " us/token (fitted with the Raven layer those steps ran).\n\n"
      << "| tokens | measured s | fit s | Raven s | attention s | rest s | fit/measured | today's layer s |\n"
      << "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (size_t i = 0; i < c.train_tokens.size(); ++i) {
    const auto p = predict(s, then, Cluster{}, Scheme::kLasp2, ComputeMode::kTarget, 1, c.train_tokens[i]);
    const auto q = predict(s, c, Cluster{}, Scheme::kLasp2, ComputeMode::kTarget, 1, c.train_tokens[i]);
    out << "| " << int64_t(c.train_tokens[i]) << " | " << fmt("%.2f", c.train_step_s[i]) << " | "
        << fmt("%.2f", p.step_s) << " | " << fmt("%.2f", p.raven_s) << " | " << fmt("%.2f", p.attn_s)
        << " | " << fmt("%.2f", p.rest_s) << " | " << fmt("%.3f", p.step_s / c.train_step_s[i]) << " | "
        << fmt("%.2f", q.step_s) << " |\n";
  }
}

// hybrid-340M steps measured on several GPUs (zigzag, LASP-2, batch 1, recompute
// on): checked, not fitted. Each names its file under docs/benchmarks/ (the Python
// test compares the figures with those files) and the one-GPU SP-path Raven layer
// measured with the same kernels on the same machine type: what the step's Raven
// layers ran, an input of the model rather than something it predicts.
struct RavenRun {
  double ms_sp[3];  // at Calibration::raven_tokens
  const char* source;
};
// sp_gsa.json at commit a75e231 (two H100s, gpus = 1, LASP-2): the layer and SP path
// of the two-H100 steps, before the kernel work and the split passes.
constexpr RavenRun kRavenH100Then{{65.451, 232.946, 460.985}, "sp_gsa.json@a75e231"};
// sp_gsa_4gpu.json (gpus = 1, LASP-2): today's layer on the four-H200 host.
constexpr RavenRun kRavenH200{{42.496, 154.119, 301.541}, "sp_gsa_4gpu.json"};
struct MeasuredStep {
  int gpus;
  double seq_len, step_s;  // launcher: mean of the steps after the first (warm-up)
  const char* machine;
  const char* source;
  Scheme scheme;  // the exchange as it ran: on a side stream since the split passes
  const RavenRun* raven;
};
constexpr MeasuredStep kMeasuredSteps[] = {
    {2, 65536, 1.601041, "2x H100", "bench_h100_gpu2.json", Scheme::kLasp2, &kRavenH100Then},
    {2, 131072, 3.133853, "2x H100", "bench_h100_gpu2.json", Scheme::kLasp2, &kRavenH100Then},
    {2, 524288, 20.281455, "2x H100", "launcher_hybrid340m_2gpu_512k.jsonl", Scheme::kLasp2, &kRavenH100Then},
    {2, 524288, 17.683165, "2 of 4x H200", "launcher_hybrid340m_2gpu_512k_h200.jsonl", Scheme::kLasp2Overlap,
     &kRavenH200},
    {4, 1048576, 29.23876, "4x H200", "launcher_hybrid340m_4gpu_1m.jsonl", Scheme::kLasp2Overlap, &kRavenH200},
    {4, 2097152, 106.3002, "4x H200", "launcher_hybrid340m_4gpu_2m.jsonl", Scheme::kLasp2Overlap, &kRavenH200},
};
Prediction step_as_calibrated(const Calibration& c, const Cluster& cl, const MeasuredStep& m) {
  return predict(hybrid(64), c, cl, m.scheme, ComputeMode::kToday, m.gpus, m.seq_len);
}
Prediction step_with_its_layer(Calibration c, const Cluster& cl, const MeasuredStep& m) {
  c.raven_ms_sp.assign(std::begin(m.raven->ms_sp), std::end(m.raven->ms_sp));
  return step_as_calibrated(c, cl, m);
}

// sp_gsa_4gpu.json, gpus = 4: weak-scaling efficiency per exchange at 64K, 256K, 512K.
constexpr double kSpTokens4[] = {65536, 262144, 524288};
constexpr double kSpWeak4Lasp2[] = {0.9631, 0.9956, 0.9949};
constexpr double kSpWeak4Lasp1[] = {0.9882, 0.9932, 0.9932};
// The bare sp_gsa op on a 256-token shard, exposed exchange in us per fwd+bwd
// (`latency` records: sp_gsa.json at two H200s, sp_gsa_4gpu.json at four).
struct MeasuredLatency {
  int gpus;
  Scheme scheme;
  double exposed_us;
};
constexpr MeasuredLatency kLatency[] = {{2, Scheme::kLasp2Overlap, 590.1},
                                        {2, Scheme::kLasp1, 1004.2},
                                        {4, Scheme::kLasp2Overlap, 594.1},
                                        {4, Scheme::kLasp1, 1809.9}};
const char* exchange_name(Scheme x) { return x == Scheme::kLasp1 ? "lasp1" : "lasp2"; }

// The SP layer benchmark: one Raven layer fwd+bwd (no recompute, no optimizer);
// weak scaling is its one-GPU SP time over the P-GPU time, i.e. the layer's
// compute over compute plus what the model exposes.
double layer_weak_scaling(const Calibration& c, const Cluster& cl, Scheme x, int P, double tokens_per_gpu) {
  Shape s = hybrid(64);
  s.layers = 1;
  s.attn_layers = 0;
  s.recompute = false;
  s.params = 0;
  const auto p = predict(s, c, cl, x, ComputeMode::kToday, P, tokens_per_gpu * P);
  return p.raven_s / (p.raven_s + p.exposed_s + p.grad_allreduce_s);
}
// The latency benchmark's op (B1 H1 K=V=64 M=32, zigzag): too short to hide
// anything, so the model exposes all of each exchange, one forward, one backward.
double latency_exposed_s(const Calibration& c, const Cluster& cl, Scheme x, int P) {
  Shape s;
  s.heads = 1;
  s.head_k = s.head_v = 64;
  s.slots = 32;
  return 2 * (exchange_sync_s(c, cl) + exchange_seconds(cl, s, x, P));
}

void multi_gpu_tables(std::ostream& out, const Calibration& c, const Cluster& cl) {
  out << "\n### Multi-GPU check: hybrid-340M steps on two and four GPUs (NVLink), LASP-2, zigzag\n\n"
      << "Fixed cost per SP exchange from the measured 2-GPU layer exposure: "
      << fmt("%.3f", exchange_sync_s(c, cl) * 1e3) << " ms (bandwidth model alone: "
      << fmt("%.3f", allgather_seconds(cl, lasp2_state_bytes(Shape{}), 2) * 1e3) << " ms per all-gather). "
      << "'model' is the H100 calibration with today's layer; 'with its layer' takes the Raven layer "
         "measured with the step's kernels on its machine type.\n\n"
      << "| GPUs | tokens | machine | measured s | model s | model/measured | with its layer s | Raven s "
         "| attention s | rest s | exposed s | model/measured | layer from |\n"
      << "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const auto& m : kMeasuredSteps) {
    const auto p = step_as_calibrated(c, cl, m), q = step_with_its_layer(c, cl, m);
    out << "| " << m.gpus << " | " << int64_t(m.seq_len) << " | " << m.machine << " | " << fmt("%.2f", m.step_s)
        << " | " << fmt("%.2f", p.step_s) << " | " << fmt("%.3f", p.step_s / m.step_s) << " | "
        << fmt("%.2f", q.step_s) << " | " << fmt("%.2f", q.raven_s) << " | " << fmt("%.2f", q.attn_s) << " | "
        << fmt("%.2f", q.rest_s) << " | " << fmt("%.3f", q.exposed_s + q.grad_allreduce_s) << " | "
        << fmt("%.3f", q.step_s / m.step_s) << " | " << m.raven->source << " |\n";
  }
  out << "\n### Four-GPU check: SP Raven layer weak scaling (one layer fwd+bwd, 4x H200)\n\n"
      << "| tokens/GPU | measured LASP-2 | model LASP-2 | measured LASP-1 | model LASP-1 |\n"
      << "|---:|---:|---:|---:|---:|\n";
  for (int i = 0; i < 3; ++i)
    out << "| " << int64_t(kSpTokens4[i]) << " | " << fmt("%.4f", kSpWeak4Lasp2[i]) << " | "
        << fmt("%.4f", layer_weak_scaling(c, cl, Scheme::kLasp2Overlap, 4, kSpTokens4[i])) << " | "
        << fmt("%.4f", kSpWeak4Lasp1[i]) << " | "
        << fmt("%.4f", layer_weak_scaling(c, cl, Scheme::kLasp1, 4, kSpTokens4[i])) << " |\n";
  out << "\n### Exposed exchange of the bare sp_gsa op, 256-token shard (H200s)\n\n"
      << "| GPUs | exchange | measured us | model us | model/measured |\n|---:|---|---:|---:|---:|\n";
  for (const auto& m : kLatency) {
    const double model_us = latency_exposed_s(c, cl, m.scheme, m.gpus) * 1e6;
    out << "| " << m.gpus << " | " << exchange_name(m.scheme) << " | " << fmt("%.0f", m.exposed_us) << " | "
        << fmt("%.0f", model_us) << " | " << fmt("%.3f", model_us / m.exposed_us) << " |\n";
  }
}

// The same checks as JSON, for the test that ties the quoted measurements to the files.
void write_checks(std::ostream& f, const Calibration& c, const Cluster& cl) {
  f << "\"checks\": {\"steps\": [";
  const char* sep = "";
  for (const auto& m : kMeasuredSteps) {
    f << sep << "{\"gpus\": " << m.gpus << ", \"seq_len\": " << int64_t(m.seq_len) << ", \"machine\": \""
      << m.machine << "\", \"source\": \"" << m.source << "\", \"measured_s\": " << m.step_s
      << ", \"model_s\": " << step_as_calibrated(c, cl, m).step_s << ", \"raven_source\": \"" << m.raven->source
      << "\", \"raven_ms_sp\": [" << m.raven->ms_sp[0] << ", " << m.raven->ms_sp[1] << ", " << m.raven->ms_sp[2]
      << "], \"model_with_its_layer_s\": " << step_with_its_layer(c, cl, m).step_s << "}";
    sep = ", ";
  }
  f << "], \"sp_layer_weak_scaling_4gpu\": [";
  sep = "";
  for (int i = 0; i < 3; ++i)
    for (Scheme x : {Scheme::kLasp2Overlap, Scheme::kLasp1}) {
      f << sep << "{\"tokens_per_gpu\": " << int64_t(kSpTokens4[i]) << ", \"exchange\": \"" << exchange_name(x)
        << "\", \"measured\": " << (x == Scheme::kLasp1 ? kSpWeak4Lasp1[i] : kSpWeak4Lasp2[i])
        << ", \"model\": " << layer_weak_scaling(c, cl, x, 4, kSpTokens4[i]) << "}";
      sep = ", ";
    }
  f << "], \"latency_exposed_us\": [";
  sep = "";
  for (const auto& m : kLatency) {
    f << sep << "{\"gpus\": " << m.gpus << ", \"exchange\": \"" << exchange_name(m.scheme)
      << "\", \"measured\": " << m.exposed_us << ", \"model\": " << latency_exposed_s(c, cl, m.scheme, m.gpus) * 1e6
      << "}";
    sep = ", ";
  }
  f << "]}";
}

void write_grid(const std::string& path, const Calibration& c, const Cluster& cl) {
  std::ofstream f(path);
  RAVENSP_CHECK(f, "--predict_json: cannot write ", path);
  f.precision(10);  // the calibration is compared with the measured JSONs digit for digit
  f << "{\"schema\": \"ravensp-bench-predict\", \"schema_version\": " << kSchemaVersion
    << ", \"calibration\": {\"raven_tokens\": [65536, 262144, 524288], \"raven_ms_local\": ["
    << c.raven_ms_local[0] << ", " << c.raven_ms_local[1] << ", " << c.raven_ms_local[2]
    << "], \"raven_ms_sp\": [" << c.raven_ms_sp[0] << ", " << c.raven_ms_sp[1] << ", " << c.raven_ms_sp[2]
    << "], \"attn_tflops\": " << c.attn_tflops << ", \"train_step_s\": [" << c.train_step_s[0] << ", "
    << c.train_step_s[1] << ", " << c.train_step_s[2] << "], \"train_raven_ms_local\": ["
    << c.train_raven_ms_local[0] << ", " << c.train_raven_ms_local[1] << ", " << c.train_raven_ms_local[2]
    << "], \"rest_us_per_token\": "
    << rest_s_per_token(c, hybrid(64)) * 1e6 << ", \"lasp2_exposed_ms_2gpu\": ["
    << c.lasp2_exposed_ms_2gpu[0] << ", " << c.lasp2_exposed_ms_2gpu[1] << ", " << c.lasp2_exposed_ms_2gpu[2]
    << "], \"exchange_sync_ms\": " << exchange_sync_s(c, cl) * 1e3 << ", \"internode_gbps\": " << cl.internode_gbps
    << "}, ";
  write_checks(f, c, cl);
  f << ", \"predictions\": [\n";
  bool first = true;
  const struct { const char* name; Shape s; } shapes[] = {
      {"hybrid-340M-M64", hybrid(64)}, {"hybrid-340M-M256", hybrid(256)}, {"raven-340M-M64", raven_only(64)}};
  for (const auto& sh : shapes)
    for (ComputeMode mode : {ComputeMode::kTarget, ComputeMode::kToday})
      for (Scheme x : kSchemes)
        for (int P : {1, 2, 4, 8, 16, 32, 64})
          // strong scaling at 256K and 2M tokens, weak scaling at 32K tokens per GPU
          for (const auto& [sweep, T] : {std::pair<const char*, double>{"strong", 262144.0},
                                         {"strong", k2M}, {"weak", 32768.0 * P}}) {
            std::string j = predict(sh.s, c, cl, x, mode, P, T).to_json();
            j.insert(1, std::string("\"shape\": \"") + sh.name + "\", \"sweep\": \"" + sweep + "\", ");
            f << (first ? "" : ",\n") << j;
            first = false;
          }
  f << "\n]}\n";
}

}  // namespace

void print_predictions(std::ostream& out, const std::string& json_path) {
  const Calibration c;
  const Cluster cl;
  out << "## ravensp-bench --predict: hybrid-340M (24 layers, d=1024, H=4, K=V=256, attention at 4 "
         "layers: 16 heads, 4 kv heads), 2048K tokens, batch 1, recompute on\n"
      << "LASP-2 all-gather per layer and rank: " << fmt("%.0f", lasp2_state_bytes(hybrid(64)))
      << " bytes (M=64), " << fmt("%.0f", lasp2_state_bytes(hybrid(256))) << " bytes (M=256); "
      << "inter-node " << cl.internode_gbps << " GB/s per GPU (assumed), " << cl.gpus_per_node
      << " GPUs per node\n";
  calibration_table(out, c);
  multi_gpu_tables(out, c, cl);
  step_table(out, "hybrid-340M, M=64", hybrid(64), c, cl, ComputeMode::kTarget);
  step_table(out, "hybrid-340M, M=256", hybrid(256), c, cl, ComputeMode::kTarget);
  step_table(out, "hybrid-340M, M=64", hybrid(64), c, cl, ComputeMode::kToday);
  paper_table(out, c, cl);
  if (!json_path.empty()) write_grid(json_path, c, cl);
}

}  // namespace ravensp::bench
