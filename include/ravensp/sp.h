// Sequence parallelism: how a global sequence is laid out over the ranks of an
// SP group, the registry that lets torch ops name a communicator by an integer
// handle, and the SP ops (GSA with LASP-2/LASP-1 state exchange; ring attention).
// Depends on ops (LibTorch) and comm. One layout serves every layer kind, so no
// re-layout happens between Raven and attention layers (DESIGN.md §4, §5).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "ravensp/comm.h"

namespace ravensp::sp {

// kContiguous: rank r holds [r*L, (r+1)*L). kZigzag: the sequence is cut into
// 2P chunks of L/2 and rank r holds chunks r and 2P-1-r (balanced causal work).
enum class Layout : int64_t { kContiguous = 0, kZigzag = 1 };
const char* layout_name(Layout l);
Layout layout_from_int(int64_t v);

// How the Raven layers obtain their incoming state: LASP-2 (one all-gather of
// per-segment end states, then a local prefix combine) or LASP-1 (states passed
// rank to rank in sequence order; serial, the baseline).
enum class StateExchange : int64_t { kLasp2 = 0, kLasp1 = 1 };
StateExchange state_exchange_from_int(int64_t v);

// A contiguous piece of the global sequence held by one rank.
struct Segment {
  int64_t global_start = 0;
  int64_t local_start = 0;
  int64_t length = 0;
  int64_t index = 0;  // position of this segment in sequence order (0 .. num_segments-1)
  int rank = 0;       // owner
};

int64_t segments_per_rank(Layout l);  // 1 or 2
// The segments rank `rank` holds, in local order; local_len tokens per rank.
// Errors (naming the argument) when local_len is not divisible by the layout.
std::vector<Segment> local_segments(Layout l, int rank, int world, int64_t local_len);
// All segments of all ranks, in sequence order.
std::vector<Segment> all_segments(Layout l, int world, int64_t local_len);

// Global token positions [local_len] (int64) of this rank's tokens: what RoPE
// and the Gumbel noise key need.
at::Tensor global_positions(Layout l, int rank, int world, int64_t local_len,
                            const at::Device& device = at::kCPU);
// This rank's shard of x (global length along `dim`), and the inverse: the
// global tensor rebuilt from all ranks' shards stacked in rank order.
at::Tensor shard(const at::Tensor& x, int64_t dim, Layout l, int rank, int world);
at::Tensor unshard(const std::vector<at::Tensor>& shards, int64_t dim, Layout l);

// Communicators are owned by the registry and named by a handle (an int the
// torch op schemas can carry, and torch.compile can trace).
int64_t register_group(std::shared_ptr<comm::Communicator> comm);
comm::Communicator& group(int64_t handle);
std::shared_ptr<comm::Communicator> group_ptr(int64_t handle);
void unregister_group(int64_t handle);
// A host-memory communicator with the same ranks, in the same order, for the SP
// ops' small control messages (the shape handshake): on an NCCL group they then
// cost a host round trip instead of two waits for the GPU to drain. Checked to
// match the group's size and rank.
void set_control_group(int64_t handle, std::shared_ptr<comm::Communicator> control);
// The control communicator of a group: the one set, else the group itself.
comm::Communicator& control_group(int64_t handle);

// SP gated slot attention on this rank's shard (DESIGN.md §4). q, k: [B, L, H, K],
// v: [B, L, H, V], s, g: [B, L, H, M] where L = local length; cu_seqlens are the
// GLOBAL document offsets (B == 1), identical on every rank; hk0/hv0 the global
// initial state [B, H, K, M]/[B, H, M, V], used by the rank holding segment 0
// (others may pass it too; it is ignored there). Differentiable; returns o [B, L, H, V].
at::Tensor sp_gsa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& s, const at::Tensor& g, double scale,
                  const std::optional<at::Tensor>& hk0, const std::optional<at::Tensor>& hv0,
                  const std::optional<at::Tensor>& cu_seqlens, int64_t group, Layout layout,
                  StateExchange exchange = StateExchange::kLasp2, int64_t chunk_size = 64);

}  // namespace ravensp::sp
