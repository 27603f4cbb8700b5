// The bookkeeping of one SP GSA call, identical on every rank: which segments
// exist in sequence order, how documents (global cu_seqlens) cut them, and the
// packed local call (pieces, their offsets and which incoming state each takes).
#pragma once

#include <cstdint>
#include <vector>

#include "ravensp/sp.h"

namespace ravensp::sp {

struct SegmentInfo {
  Segment seg;
  bool flows_in = true;      // the state before the segment enters it (no document starts at its start)
  bool pass_through = true;  // ... and reaches its end (no document starts inside it)
  int64_t last_piece_start = 0;  // global start of the piece that ends the segment
};

// A run of local tokens of one row inside one segment with no document start
// inside; the local op sees each piece as one packed sequence.
struct Piece {
  int64_t row = 0;
  int64_t local_seg = 0;      // index into GsaPlan::mine
  int64_t flat_start = 0;     // offset in the flattened [B * L] local tokens
  int64_t length = 0;
  bool first_of_segment = false;
  bool last_of_segment = false;
};

struct GsaPlan {
  int world = 1, rank = 0;
  Layout layout = Layout::kContiguous;
  int64_t batch = 1, local_len = 0;
  std::vector<SegmentInfo> all;   // every segment, in sequence order
  std::vector<int64_t> mine;      // indices into `all` of this rank's segments, local order
  std::vector<Piece> pieces;      // local pieces, in flattened-token order
  std::vector<int64_t> local_cu;  // [pieces + 1] offsets for the local packed call
  const SegmentInfo& info(int64_t local_seg) const { return all[mine[local_seg]]; }
};

// cu_global: empty when not packed (each of the batch rows is one sequence).
GsaPlan make_gsa_plan(Layout layout, int rank, int world, int64_t batch, int64_t local_len,
                      const std::vector<int64_t>& cu_global);

}  // namespace ravensp::sp
