// The state exchange of SP GSA (DESIGN.md §4): given each local segment's end
// state from zero and log decay, produce each local segment's incoming state
// (forward), and given the gradients of the local outputs with respect to those
// incoming states, produce the gradient arriving at each local segment's end
// (backward). LASP-2: one all-gather each way plus a local scan. LASP-1: states
// passed owner to owner in sequence order (serial; the baseline).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "ravensp/comm.h"
#include "sp/gsa_plan.h"

namespace ravensp::sp {

// Per-head states of a segment: hk [B, H, K, M], hv [B, H, M, V], log decay [B, H, M].
struct SegState {
  at::Tensor hk, hv, logd;
};

struct ExchangeFwd {
  std::vector<SegState> incoming;  // per local segment: hk, hv (logd unused)
};

struct ExchangeBwd {
  std::vector<SegState> grad_end;  // per local segment: gradient at its end state
  at::Tensor grad_h0k, grad_h0v;   // gradient of the global initial state (segment 0's owner)
};

// local: per local segment, end state from zero (hk, hv) and log decay. h0k/h0v:
// the global initial state or undefined.
ExchangeFwd exchange_forward(comm::Communicator& c, const GsaPlan& plan, StateExchange mode,
                             const std::vector<SegState>& local, const at::Tensor& h0k,
                             const at::Tensor& h0v);

// grad_in: per local segment, d(outputs)/d(incoming state) from the local
// backward (zero where the segment does not take a state in). logd: per local
// segment log decay (from the forward).
ExchangeBwd exchange_backward(comm::Communicator& c, const GsaPlan& plan, StateExchange mode,
                              const std::vector<SegState>& grad_in,
                              const std::vector<at::Tensor>& local_logd);

}  // namespace ravensp::sp
