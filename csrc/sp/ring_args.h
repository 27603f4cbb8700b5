// Argument checks of ring attention: local checks whose failure is reported on
// every rank of the group (through a small shape handshake all-gather), and the
// cross-rank comparison that catches ranks disagreeing on shapes or options.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "ring_plan.h"

namespace ravensp::sp::ring {

// Validates (q, k, v, options) on this rank, then, with a group, compares every
// rank's view with one all-gather; throws ravensp::Error on every rank naming the
// offending argument and rank. Returns the configuration the loops run with.
Config make_config(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   double scale, bool causal, int64_t window,
                   const std::optional<at::Tensor>& cu_seqlens, int64_t group, int64_t layout,
                   const at::Tensor* grad_o = nullptr, const at::Tensor* o = nullptr,
                   const at::Tensor* lse = nullptr);

}  // namespace ravensp::sp::ring
