// A one-rank host communicator (TCP backend, nothing leaves the process) for a
// lone ravensp-bench process: the SP ops still run their exchange code path
// (internal to csrc/bench).
#pragma once

#include <memory>

#include "ravensp/comm.h"

namespace ravensp::bench {

std::shared_ptr<comm::Communicator> single_rank_host();

}  // namespace ravensp::bench
