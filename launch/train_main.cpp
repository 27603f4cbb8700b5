// ravensp-train's main(): options, the launch environment's communicator, run.
// Everything else lives in the train room (include/ravensp/train.h).
#include <cstdio>
#include <exception>
#include <iostream>

#include "ravensp/train.h"

int main(int argc, char** argv) {
  int rank = 0;
  try {
    // Options first: a bad option fails before MPI, NCCL or any allocation. The
    // launcher's environment already tells the world size, so sp_size is checked too.
    const int world_size = ravensp::comm::detect_launch_env().world_size;
    auto cfg = ravensp::train::parse_options(argc, argv, world_size);
    if (!cfg) return 0;  // --help
    auto world = ravensp::train::init_world_from_env();
    rank = world ? world->rank() : 0;
    auto result = ravensp::train::run(*cfg, world);
    if (rank == 0 && !result.records.empty()) {
      const auto& last = result.records.back();
      double tps = 0;
      for (const auto& r : result.records) tps += r.tokens_per_s_per_gpu;
      tps /= static_cast<double>(result.records.size());
      std::cerr << "ravensp-train: done at step " << last.step << ": loss " << last.loss
                << (last.accuracy >= 0 ? ", accuracy " + std::to_string(last.accuracy) : "")
                << ", mean " << tps << " tokens/s per rank, peak memory " << last.peak_mem_gb
                << " GB" << (result.last_checkpoint.empty() ? "" : ", saved " + result.last_checkpoint)
                << "\n";
    }
    return 0;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "ravensp-train [rank %d]: error: %s\n", rank, e.what_without_backtrace());
    std::fflush(stderr);
    return 1;
  } catch (const std::exception& e) {
    // Under mpirun/srun/torchrun a non-zero exit ends the other ranks too; the
    // message names the rank so the failing one is obvious in a merged log.
    std::fprintf(stderr, "ravensp-train [rank %d]: error: %s\n", rank, e.what());
    std::fflush(stderr);
    return 1;
  }
}
