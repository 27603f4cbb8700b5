// The record schema's writers (JSON document and CSV rows, documented in
// docs/benchmarks.md) and the run's metadata: machine, date, versions.
#include <sys/utsname.h>
#include <torch/version.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <ATen/Parallel.h>

#include "ravensp/bench.h"

#if defined(RAVENSP_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif
#if defined(RAVENSP_WITH_NCCL)
#include <nccl.h>
#endif

namespace ravensp::bench {
namespace {

std::string quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (c == '\n') o += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
    else o += c;
  }
  return o + "\"";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream os;
  os.precision(7);
  os << v;
  return os.str();
}

// One ordered list of (name, value-as-JSON) serves both JSON and CSV, so the two
// formats cannot drift apart.
std::vector<std::pair<std::string, std::string>> fields(const Record& r) {
  return {{"schema_version", std::to_string(kSchemaVersion)},
          {"what", quote(r.what)},
          {"status", quote(r.status)},
          {"error", quote(r.error)},
          {"world_size", std::to_string(r.world_size)},
          {"seq_len", std::to_string(r.seq_len)},
          {"tokens_per_rank", std::to_string(r.tokens_per_rank)},
          {"batch", std::to_string(r.batch)},
          {"layout", quote(r.layout)},
          {"dtype", quote(r.dtype)},
          {"device", quote(r.device)},
          {"repeats", std::to_string(r.repeats)},
          {"warmup", std::to_string(r.warmup)},
          {"step_ms", num(r.step_ms)},
          {"step_ms_min", num(r.step_ms_min)},
          {"step_ms_max", num(r.step_ms_max)},
          {"local_ms", r.local_ms < 0 ? "null" : num(r.local_ms)},
          {"exposed_comm_ms", num(r.exposed_comm_ms)},
          {"exposed_comm_method", quote(r.exposed_comm_method)},
          {"comm_host_ms", num(r.comm_host_ms)},
          {"comm_share", num(r.comm_share)},
          {"tokens_per_s_per_rank", num(r.tokens_per_s_per_rank)},
          {"flops_per_rank", num(r.flops_per_rank)},
          {"tflops_per_rank", num(r.tflops_per_rank)},
          {"peak_mem_gb", num(r.peak_mem_gb)},
          {"mem_kind", quote(r.mem_kind)}};
}

std::vector<std::pair<std::string, std::string>> fields(const RunMeta& m) {
  return {{"machine", quote(m.machine)},         {"hostname", quote(m.hostname)},
          {"date", quote(m.date)},               {"ravensp_version", quote(m.ravensp_version)},
          {"torch_version", quote(m.torch_version)}, {"cuda_version", quote(m.cuda_version)},
          {"nccl_version", quote(m.nccl_version)},   {"backend", quote(m.backend)},
          {"meta_world_size", std::to_string(m.world_size)}, {"threads", std::to_string(m.threads)},
          {"command", quote(m.command)}};
}

std::string object(const std::vector<std::pair<std::string, std::string>>& f) {
  std::string o = "{";
  for (size_t i = 0; i < f.size(); ++i) o += (i ? ", " : "") + quote(f[i].first) + ": " + f[i].second;
  return o + "}";
}

// CSV cells: JSON strings lose their quotes unless they hold a comma or quote.
std::string csv_cell(const std::string& json) {
  if (json.size() < 2 || json.front() != '"') return json == "null" ? "" : json;
  std::string s;  // undo quote()'s escapes
  for (size_t i = 1; i + 1 < json.size(); ++i) {
    if (json[i] == '\\' && i + 2 < json.size()) {
      ++i;
      s += json[i] == 'n' ? '\n' : json[i];
    } else {
      s += json[i];
    }
  }
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

}  // namespace

RunMeta collect_meta(const std::string& device, const std::string& backend, int world_size) {
  RunMeta m;
  struct utsname u {};
  uname(&u);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  m.hostname = host;
  m.machine = std::string(u.sysname) + " " + u.release + " " + u.machine + ", " +
              std::to_string(std::thread::hardware_concurrency()) + " CPUs";
#if defined(RAVENSP_WITH_CUDA)
  int rt = 0, n = 0;
  cudaRuntimeGetVersion(&rt);
  m.cuda_version = std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10);
  if (device == "cuda" && cudaGetDeviceCount(&n) == cudaSuccess && n > 0) {
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    m.machine = std::string(prop.name) + " x" + std::to_string(world_size) + " ranks; " + m.machine;
  }
#endif
#if defined(RAVENSP_WITH_NCCL)
  int nv = 0;
  ncclGetVersion(&nv);
  m.nccl_version = std::to_string(nv / 10000) + "." + std::to_string((nv / 100) % 100) + "." +
                   std::to_string(nv % 100);
#endif
  (void)device;
  std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  m.date = date;
  m.ravensp_version = RAVENSP_VERSION;
  m.torch_version = TORCH_VERSION;
  m.backend = backend;
  m.world_size = world_size;
  m.threads = at::get_num_threads();
  return m;
}

std::string to_json(const Record& r) { return object(fields(r)); }
std::string to_json(const RunMeta& m) { return object(fields(m)); }

std::string document_json(const RunMeta& m, const std::vector<Record>& records) {
  std::string o = "{\"schema\": " + quote(kSchemaName) + ", \"schema_version\": " +
                  std::to_string(kSchemaVersion) + ",\n \"meta\": " + to_json(m) + ",\n \"records\": [";
  for (size_t i = 0; i < records.size(); ++i) o += (i ? ",\n  " : "\n  ") + to_json(records[i]);
  return o + "\n ]}\n";
}

std::vector<std::string> csv_columns() {
  std::vector<std::string> c;
  for (const auto& f : fields(Record{})) c.push_back(f.first);
  for (const auto& f : fields(RunMeta{})) c.push_back(f.first);
  return c;
}

std::string csv_row(const RunMeta& m, const Record& r) {
  std::string o;
  for (const auto& f : fields(r)) o += (o.empty() ? "" : ",") + csv_cell(f.second);
  for (const auto& f : fields(m)) o += "," + csv_cell(f.second);
  return o;
}

namespace {

// Writes next to path and renames over it, so a reader (or a run killed at its
// time limit mid-write) never sees half a file.
template <typename Fill>
void write_atomically(const std::string& path, const char* what, Fill&& fill) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    RAVENSP_CHECK(f, "cannot write the ", what, " output ", path, " (opening ", tmp, " failed)");
    fill(f);
    f.flush();
    RAVENSP_CHECK(f.good(), "writing ", tmp, " failed");
  }
  RAVENSP_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

}  // namespace

void write_json(const std::string& path, const RunMeta& m, const std::vector<Record>& records) {
  write_atomically(path, "JSON", [&](std::ostream& f) { f << document_json(m, records); });
}

void write_csv(const std::string& path, const RunMeta& m, const std::vector<Record>& records) {
  write_atomically(path, "CSV", [&](std::ostream& f) {
    std::string header;
    for (const auto& c : csv_columns()) header += (header.empty() ? "" : ",") + c;
    f << header << "\n";
    for (const auto& r : records) f << csv_row(m, r) << "\n";
  });
}

}  // namespace ravensp::bench
