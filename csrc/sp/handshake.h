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

// Collective over c; `like` names the device the exchange uses.
void handshake(comm::Communicator& c, const char* fn, const at::Tensor& like,
               const std::vector<Field>& fields);

}  // namespace ravensp::sp
