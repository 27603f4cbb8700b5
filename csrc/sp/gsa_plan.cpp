// Builds the GsaPlan (see gsa_plan.h) from the layout and the global document offsets.
#include "sp/gsa_plan.h"

#include <algorithm>

#include "ravensp/check.h"

namespace ravensp::sp {

GsaPlan make_gsa_plan(Layout layout, int rank, int world, int64_t batch, int64_t local_len,
                      const std::vector<int64_t>& cu) {
  GsaPlan p;
  p.world = world;
  p.rank = rank;
  p.layout = layout;
  p.batch = batch;
  p.local_len = local_len;
  // Document starts strictly inside (a, b), and whether one sits at a.
  auto starts_in = [&](int64_t a, int64_t b) {
    std::vector<int64_t> out;
    for (int64_t x : cu)
      if (x > a && x < b) out.push_back(x);
    return out;
  };
  auto starts_at = [&](int64_t a) { return std::find(cu.begin(), cu.end(), a) != cu.end(); };
  for (const Segment& s : all_segments(layout, world, local_len)) {
    SegmentInfo info;
    info.seg = s;
    const auto inside = starts_in(s.global_start, s.global_start + s.length);
    info.flows_in = cu.empty() || !starts_at(s.global_start);
    info.pass_through = info.flows_in && inside.empty();
    info.last_piece_start = inside.empty() ? s.global_start : inside.back();
    p.all.push_back(info);
  }
  for (const Segment& s : local_segments(layout, rank, world, local_len)) p.mine.push_back(s.index);
  p.local_cu.push_back(0);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t li = 0; li < static_cast<int64_t>(p.mine.size()); ++li) {
      const Segment& s = p.all[p.mine[li]].seg;
      std::vector<int64_t> cuts = starts_in(s.global_start, s.global_start + s.length);
      cuts.insert(cuts.begin(), s.global_start);
      cuts.push_back(s.global_start + s.length);
      for (size_t i = 0; i + 1 < cuts.size(); ++i) {
        Piece pc;
        pc.row = b;
        pc.local_seg = li;
        pc.flat_start = b * local_len + s.local_start + (cuts[i] - s.global_start);
        pc.length = cuts[i + 1] - cuts[i];
        pc.first_of_segment = i == 0;
        pc.last_of_segment = i + 2 == cuts.size();
        p.pieces.push_back(pc);
        p.local_cu.push_back(pc.flat_start + pc.length);
      }
    }
  }
  return p;
}

}  // namespace ravensp::sp
