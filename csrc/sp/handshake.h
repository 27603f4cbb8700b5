// The handshake of the SP ops: before any exchange, one tiny all-gather of a
// fixed-size record per rank (the call's sizes and options, and the rank's own
// argument error if it has one), so that a bad input on one rank, or ranks
// that disagree (lengths, heads, layouts, documents), make every rank raise
// with a message naming the rank, the field and both values, instead of the
// others blocking in a transfer whose partner never comes or whose sizes do
// not match.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ravensp/comm.h"

namespace ravensp::sp {

// Order-sensitive checksum of the global document offsets.
int64_t checksum(const std::vector<int64_t>& values);

// Collective over c (the group's control communicator, sp::control_group): host
// tensors when c moves host memory, else tensors on `device` (a CUDA device).
// names: what every rank must agree on (the same list on every rank, so the
// records have one size); values: this rank's, one per name (ignored when
// local_error is set: this rank's argument error, "" when its inputs are fine).
// Throws on every rank when any rank has an error (each such rank's message)
// or the values disagree. A one-rank group skips the exchange and throws its
// own error, if any.
void handshake(comm::Communicator& c, const char* fn, const at::Device& device,
               const std::vector<const char*>& names, std::vector<int64_t> values,
               const std::string& local_error = "");

// Runs check() (the rank's argument checks, returning its values of `names`),
// then the handshake, so that one rank's bad input raises on all ranks.
template <typename Check>
void checked_handshake(comm::Communicator& c, const char* fn, const at::Device& device,
                       const std::vector<const char*>& names, Check check) {
  std::string err;
  std::vector<int64_t> values;
  try {
    values = check();
  } catch (const std::exception& e) {
    err = e.what();
  }
  handshake(c, fn, device, names, std::move(values), err);
}

}  // namespace ravensp::sp
