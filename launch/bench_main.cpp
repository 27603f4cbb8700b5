// ravensp-bench's main(): options, --predict (the scaling model, no measuring), or
// the launch environment's communicator, the sweep, and rank 0 writing JSON/CSV.
#include <cstdio>
#include <exception>
#include <iostream>

#include "ravensp/bench.h"

int main(int argc, char** argv) {
  namespace bench = ravensp::bench;
  int rank = 0;
  try {
    auto opts = bench::parse_options(argc, argv);
    if (!opts) return 0;  // --help
    if (opts->predict) {
      bench::print_predictions(std::cout, opts->predict_json);
      return 0;
    }
    auto world = ravensp::train::init_world_from_env();
    rank = world ? world->rank() : 0;
    // Rank 0 rewrites the files after every point: a sweep stopped at a time
    // limit (long points on a lent GPU) keeps every point it finished.
    const bool to_files = !opts->out_json.empty() || !opts->out_csv.empty();
    auto meta_for = [&](const std::vector<bench::Record>& records) {
      const std::string device = records.empty() ? "cpu" : records.front().device;
      const std::string backend = device == "cuda" ? "nccl" : world ? ravensp::comm::backend_name(world->backend()) : "none";
      auto meta = bench::collect_meta(device, backend, world ? world->size() : 1);
      meta.command = opts->command;
      return meta;
    };
    auto write = [&](const std::vector<bench::Record>& records) {
      if (rank != 0 || !to_files) return;
      const auto meta = meta_for(records);
      if (!opts->out_json.empty()) bench::write_json(opts->out_json, meta, records);
      if (!opts->out_csv.empty()) bench::write_csv(opts->out_csv, meta, records);
    };
    auto records = bench::run(*opts, world, write);
    if (rank == 0 && !to_files) std::cout << bench::document_json(meta_for(records), records);
    return 0;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "ravensp-bench [rank %d]: error: %s\n", rank, e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    // A non-zero exit makes mpirun/srun/torchrun stop the other ranks.
    std::fprintf(stderr, "ravensp-bench [rank %d]: error: %s\n", rank, e.what());
    return 1;
  }
}
