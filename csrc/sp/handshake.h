// Shape handshake of the SP ops: a tiny all-gather of the call's sizes, so that
// ranks that disagree (lengths, heads, layouts, documents) fail together with a
// message naming the field and both values, instead of exchanging garbage or
// hanging in a collective whose sizes do not match.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "ravensp/comm.h"

namespace ravensp::sp {

using Field = std::pair<const char*, int64_t>;

// Order-sensitive checksum of the global document offsets.
int64_t checksum(const std::vector<int64_t>& values);

// Collective over c (the group's control communicator, sp::control_group): host
// tensors when c moves host memory, else tensors on `device`. A one-rank group
// has no one to disagree with and returns at once.
void handshake(comm::Communicator& c, const char* fn, const at::Device& device,
               const std::vector<Field>& fields);

}  // namespace ravensp::sp
