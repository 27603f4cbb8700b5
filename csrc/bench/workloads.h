// What one benchmark point runs (internal to csrc/bench): a step with the SP
// exchange and, where one exists, the same rank's work with the exchange skipped.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "ravensp/bench.h"

namespace ravensp::bench {

// The run's fixed context: device, dtype, the SP group (registered, timed).
struct Context {
  Options opts;
  at::Device device{at::kCPU};
  at::ScalarType dtype = at::kFloat;
  int rank = 0, world = 1;
  int64_t group = 0;                                   // sp::register_group handle (0: none)
  std::shared_ptr<comm::Communicator> world_comm;      // host-side (may be null)
  std::shared_ptr<comm::Communicator> sp_comm;         // device-side, timed
  std::function<double()> comm_seconds;                // time inside sp_comm so far
  std::function<void()> comm_reset;
};

struct Workload {
  std::function<void()> step;   // one fwd+bwd with the exchange
  std::function<void()> local;  // the same work without it (empty: none)
  double local_scale = 1;       // local's time is multiplied by this (ring: tiles of work)
  double flops = 0;             // per rank, fwd+bwd
  std::string comm_method;      // how exposed communication is obtained
};

// sp_gsa_lasp2/lasp1, ring_attention, hybrid_block (train_step runs the trainer).
Workload make_workload(const Context& c, const std::string& what, int64_t seq_len);

}  // namespace ravensp::bench
