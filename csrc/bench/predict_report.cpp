// ravensp-bench --predict: the scaling model's tables (the numbers quoted in
// docs/scaling_model.md) and the prediction grid as JSON for plot.py.
#include <cstdio>
#include <fstream>
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

void calibration_table(std::ostream& out, const Calibration& c) {
  const Shape s = hybrid(64);
  out << "\n### Calibration check: hybrid-340M step on one H100 (docs/launcher.md)\n\n"
      << "Rest of the step (MLPs, projections, head, optimizer): "
      << fmt("%.2f", rest_s_per_token(c, s) * 1e6) << " us/token (fitted).\n\n"
      << "| tokens | measured s | model s | Raven s | attention s | rest s | model/measured |\n"
      << "|---:|---:|---:|---:|---:|---:|---:|\n";
  for (size_t i = 0; i < c.train_tokens.size(); ++i) {
    auto p = predict(s, c, Cluster{}, Scheme::kLasp2, ComputeMode::kTarget, 1, c.train_tokens[i]);
    out << "| " << int64_t(c.train_tokens[i]) << " | " << fmt("%.2f", c.train_step_s[i]) << " | "
        << fmt("%.2f", p.step_s) << " | " << fmt("%.2f", p.raven_s) << " | " << fmt("%.2f", p.attn_s)
        << " | " << fmt("%.2f", p.rest_s) << " | " << fmt("%.3f", p.step_s / c.train_step_s[i]) << " |\n";
  }
}

// The model against the two-GPU measurements it was not fitted to (LASP-2, the
// Raven layer at today's SP-path cost, which is what ran).
void two_gpu_table(std::ostream& out, const Calibration& c, const Cluster& cl) {
  out << "\n### Two-GPU check: hybrid-340M step on two H100s (NVLink), LASP-2\n\n"
      << "Fixed cost per SP exchange from the measured 2-GPU layer exposure: "
      << fmt("%.3f", exchange_sync_s(c, cl) * 1e3) << " ms (bandwidth model alone: "
      << fmt("%.3f", allgather_seconds(cl, lasp2_state_bytes(Shape{}), 2) * 1e3) << " ms per all-gather).\n\n"
      << "| tokens | measured s | model s | exposed s | model/measured |\n|---:|---:|---:|---:|---:|\n";
  for (size_t i = 0; i < c.train2_tokens.size(); ++i) {
    const auto p = predict(hybrid(64), c, cl, Scheme::kLasp2, ComputeMode::kToday, 2, c.train2_tokens[i]);
    out << "| " << fmt("%.0f", c.train2_tokens[i]) << " | " << fmt("%.2f", c.train2_step_s[i]) << " | "
        << fmt("%.2f", p.step_s) << " | " << fmt("%.3f", p.exposed_s) << " | "
        << fmt("%.3f", p.step_s / c.train2_step_s[i]) << " |\n";
  }
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
    << c.train_step_s[1] << ", " << c.train_step_s[2] << "], \"rest_us_per_token\": "
    << rest_s_per_token(c, hybrid(64)) * 1e6 << ", \"lasp2_exposed_ms_2gpu\": ["
    << c.lasp2_exposed_ms_2gpu[0] << ", " << c.lasp2_exposed_ms_2gpu[1] << ", " << c.lasp2_exposed_ms_2gpu[2]
    << "], \"exchange_sync_ms\": " << exchange_sync_s(c, cl) * 1e3 << ", \"internode_gbps\": " << cl.internode_gbps
    << "}, \"predictions\": [\n";
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
  two_gpu_table(out, c, cl);
  step_table(out, "hybrid-340M, M=64", hybrid(64), c, cl, ComputeMode::kTarget);
  step_table(out, "hybrid-340M, M=256", hybrid(256), c, cl, ComputeMode::kTarget);
  step_table(out, "hybrid-340M, M=64", hybrid(64), c, cl, ComputeMode::kToday);
  paper_table(out, c, cl);
  if (!json_path.empty()) write_grid(json_path, c, cl);
}

}  // namespace ravensp::bench
