// Small host-built int64 vectors (document offsets, mask bounds) put on the
// device without stalling the host: a pageable copy would make the host wait
// for every kernel queued before it, once per SP call; a pinned one is ordered
// on the current stream and the host runs on.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace ravensp::sp {

at::Tensor upload(const std::vector<int64_t>& values, const at::Device& device);

}  // namespace ravensp::sp
