// Tile planning for ring attention: classify (query segment, key segment) pairs by
// their global positions, merge unmasked neighbours into bigger kernel calls, and
// cut masked tiles into row chunks trimmed to what each chunk can see.
#include "ring_plan.h"

#include <algorithm>
#include <limits>

#include "sp/upload.h"

namespace ravensp::sp::ring {
namespace {

constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;

// Document index of global position p: cu[d] <= p < cu[d+1].
size_t doc_of(const std::vector<int64_t>& cu, int64_t p) {
  return static_cast<size_t>(std::upper_bound(cu.begin() + 1, cu.end(), p) - (cu.begin() + 1));
}

// Kind of the tile whose global rows are [qa, qb] and columns [ka, kb], or false
// when no pair is visible. Valid because visible_keys' bounds are monotone.
bool classify(const Config& c, int64_t qa, int64_t qb, int64_t ka, int64_t kb, TileKind* kind) {
  const KeyRange first = visible_keys(c, qa), last = visible_keys(c, qb);
  if (ka > last.hi || kb < first.lo) return false;
  if (last.lo <= ka && kb <= first.hi) {
    *kind = TileKind::kFull;
  } else if (c.causal && qa == ka && qb == kb && last.lo <= ka) {
    *kind = TileKind::kCausal;  // only the triangle cuts: the fused kernels' is_causal
  } else {
    *kind = TileKind::kMasked;
  }
  return true;
}

// Merges two kFull tiles that share rows (or columns) and touch along the other
// axis, so a zigzag step becomes one kernel call instead of two half-size ones.
bool try_merge(Tile& a, const Tile& b) {
  if (a.kind != TileKind::kFull || b.kind != TileKind::kFull) return false;
  if (a.q0 == b.q0 && a.nq == b.nq && a.k0 + a.nk == b.k0) {
    a.nk += b.nk;
    return true;
  }
  if (a.k0 == b.k0 && a.nk == b.nk && a.q0 + a.nq == b.q0) {
    a.nq += b.nq;
    return true;
  }
  return false;
}

std::vector<Tile> coarse_tiles(const Config& c, int q_rank, int kv_rank) {
  std::vector<Tile> tiles;
  for (const Segment& qs : local_segments(c.layout, q_rank, c.world, c.L))
    for (const Segment& ks : local_segments(c.layout, kv_rank, c.world, c.L)) {
      TileKind kind;
      if (classify(c, qs.global_start, qs.global_start + qs.length - 1, ks.global_start,
                   ks.global_start + ks.length - 1, &kind))
        tiles.push_back(Tile{qs.local_start, qs.length, qs.global_start, ks.local_start,
                             ks.length, ks.global_start, kind});
    }
  for (bool merged = true; merged;) {  // at most four tiles: quadratic is fine
    merged = false;
    for (size_t i = 0; i < tiles.size() && !merged; ++i)
      for (size_t j = 0; j < tiles.size() && !merged; ++j)
        if (i != j && try_merge(tiles[i], tiles[j])) {
          tiles.erase(tiles.begin() + static_cast<std::ptrdiff_t>(j));
          merged = true;
        }
  }
  return tiles;
}

}  // namespace

KeyRange visible_keys(const Config& c, int64_t i) {
  int64_t lo = -kInf, hi = c.causal ? i : kInf;
  if (c.window > 0) {
    lo = i - c.window + 1;
    if (!c.causal) hi = i + c.window - 1;
  }
  if (!c.cu.empty()) {
    const size_t d = doc_of(c.cu, i);
    lo = std::max(lo, c.cu[d]);
    hi = std::min(hi, c.cu[d + 1] - 1);
  }
  return {lo, hi};
}

bool needs_block(const Config& c, int q_rank, int kv_rank) {
  return !coarse_tiles(c, q_rank, kv_rank).empty();
}

std::vector<Tile> plan_tiles(const Config& c, int q_rank, int kv_rank, int64_t chunk_rows) {
  std::vector<Tile> out;
  for (const Tile& t : coarse_tiles(c, q_rank, kv_rank)) {
    if (t.kind != TileKind::kMasked) {
      out.push_back(t);
      continue;
    }
    for (int64_t r = 0, nq = 0; r < t.nq; r += nq) {
      nq = std::min(chunk_rows, t.nq - r);
      const int64_t qa = t.qg + r;
      if (!c.cu.empty())  // end chunks at document starts: a chunk inside one document
        nq = std::min(nq, c.cu[doc_of(c.cu, qa) + 1] - qa);  // is causal-diagonal or full
      const int64_t qb = qa + nq - 1;
      // Keys this chunk can reach, clipped to the tile's columns.
      const int64_t ka = std::max(t.kg, visible_keys(c, qa).lo);
      const int64_t kb = std::min(t.kg + t.nk - 1, visible_keys(c, qb).hi);
      if (ka > kb) continue;
      auto add = [&](int64_t a, int64_t b) {  // keys [a, b] of this chunk, if visible
        TileKind kind;
        if (classify(c, qa, qb, a, b, &kind))
          out.push_back(Tile{t.q0 + r, nq, qa, t.k0 + (a - t.kg), b - a + 1, a, kind});
      };
      TileKind kind;
      if (!classify(c, qa, qb, ka, kb, &kind)) continue;
      if (kind == TileKind::kMasked && c.causal && ka < qa && kb == qb) {
        add(ka, qa - 1);  // the keys before the chunk: often unmasked (fused kernel)
        add(qa, qb);      // the chunk's own triangle: causal-diagonal unless a window cuts it
      } else {
        add(ka, kb);
      }
    }
  }
  return out;
}

at::Tensor tile_mask(const Config& c, const Tile& t, int64_t r0, int64_t rows,
                     const at::Device& device) {
  std::vector<int64_t> lo(static_cast<size_t>(rows)), hi(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const KeyRange kr = visible_keys(c, t.qg + r0 + r);
    lo[r] = kr.lo;
    hi[r] = kr.hi;
  }
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  at::Tensor lo_t = upload(lo, device).unsqueeze(1);
  at::Tensor hi_t = upload(hi, device).unsqueeze(1);
  at::Tensor kpos = at::arange(t.kg, t.kg + t.nk, i64.device(device)).unsqueeze(0);
  return kpos.ge(lo_t).logical_and_(kpos.le(hi_t));
}

}  // namespace ravensp::sp::ring
