// Ring attention's static plan: the validated configuration shared by the passes,
// which (query rows, key rows) tiles of a rank pair are visible under the causal,
// window and document masks, and the per-tile masks built from global positions.
// Every rank computes the same plan, so senders and receivers agree without asking.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "ravensp/comm.h"
#include "ravensp/sp.h"

namespace ravensp::sp::ring {

struct Config {
  int rank = 0;
  int world = 1;
  Layout layout = Layout::kContiguous;
  int64_t B = 0, L = 0, H = 0, Hkv = 0, D = 0;
  double scale = 1.0;
  bool causal = true;
  int64_t window = 0;             // <= 0: none
  std::vector<int64_t> cu;        // global document offsets; empty: one document
  comm::Communicator* comm = nullptr;  // nullptr: no SP group (world 1)
  at::ScalarType acc_dtype = at::kFloat;  // merge/accumulate dtype (fp64 for fp64 inputs)
};

// kFull: every pair visible, no mask. kCausal: the square diagonal tile of one
// segment (same global rows and columns), lower-triangular. kMasked: anything else.
enum class TileKind { kFull, kCausal, kMasked };

// A block of query rows [q0, q0+nq) of this rank's shard against key rows
// [k0, k0+nk) of the source rank's shard; qg/kg are the global positions of q0/k0.
// A tile never straddles a segment boundary unless it is kFull.
struct Tile {
  int64_t q0, nq, qg;
  int64_t k0, nk, kg;
  TileKind kind;
};

// Inclusive range [lo, hi] of global key positions visible to the query at global
// position i. Both bounds are non-decreasing in i, which is what lets a tile be
// classified from its corner rows.
struct KeyRange {
  int64_t lo, hi;
};
KeyRange visible_keys(const Config& c, int64_t i);

// The non-empty tiles of q_rank's queries against kv_rank's keys: masked tiles are
// cut into row chunks of at most chunk_rows, trimmed to the keys they can see and
// classified again, so no tile mask exceeds chunk_rows x (keys one chunk reaches).
std::vector<Tile> plan_tiles(const Config& c, int q_rank, int kv_rank, int64_t chunk_rows);
// Whether q_rank sees any key of kv_rank (decides who sends a K/V block to whom).
bool needs_block(const Config& c, int q_rank, int kv_rank);

// bool [rows, nk] (true = visible) for query rows [r0, r0+rows) of a tile.
at::Tensor tile_mask(const Config& c, const Tile& t, int64_t r0, int64_t rows,
                     const at::Device& device);

}  // namespace ravensp::sp::ring
