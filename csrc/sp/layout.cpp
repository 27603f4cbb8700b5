// Sequence layouts (contiguous, zigzag): which global tokens a rank holds, their
// positions, and sharding/unsharding of whole tensors along the sequence dim.
#include <ATen/ATen.h>

#include "ravensp/check.h"
#include "ravensp/sp.h"

namespace ravensp::sp {

const char* layout_name(Layout l) {
  return l == Layout::kZigzag ? "zigzag" : "contiguous";
}

Layout layout_from_int(int64_t v) {
  RAVENSP_CHECK(v == 0 || v == 1, "layout must be 0 (contiguous) or 1 (zigzag), got ", v);
  return static_cast<Layout>(v);
}

StateExchange state_exchange_from_int(int64_t v) {
  RAVENSP_CHECK(v == 0 || v == 1, "state exchange must be 0 (lasp2) or 1 (lasp1), got ", v);
  return static_cast<StateExchange>(v);
}

int64_t segments_per_rank(Layout l) { return l == Layout::kZigzag ? 2 : 1; }

std::vector<Segment> local_segments(Layout l, int rank, int world, int64_t local_len) {
  RAVENSP_CHECK(world >= 1 && rank >= 0 && rank < world, "rank ", rank,
                " must be in [0, world size ", world, ")");
  const int64_t n = segments_per_rank(l);
  RAVENSP_CHECK(local_len > 0 && local_len % n == 0, "local sequence length ", local_len,
                " must be a positive multiple of ", n, " for the ", layout_name(l), " layout");
  const int64_t c = local_len / n;
  if (l == Layout::kContiguous) return {Segment{rank * c, 0, c, rank, rank}};
  const int64_t second = 2 * int64_t(world) - 1 - rank;
  return {Segment{rank * c, 0, c, rank, rank}, Segment{second * c, c, c, second, rank}};
}

std::vector<Segment> all_segments(Layout l, int world, int64_t local_len) {
  std::vector<Segment> all(static_cast<size_t>(world * segments_per_rank(l)));
  for (int r = 0; r < world; ++r)
    for (const Segment& s : local_segments(l, r, world, local_len)) all[s.index] = s;
  return all;
}

at::Tensor global_positions(Layout l, int rank, int world, int64_t local_len,
                            const at::Device& device) {
  std::vector<at::Tensor> parts;
  for (const Segment& s : local_segments(l, rank, world, local_len))
    parts.push_back(at::arange(s.global_start, s.global_start + s.length,
                               at::TensorOptions().dtype(at::kLong).device(device)));
  return at::cat(parts);
}

at::Tensor shard(const at::Tensor& x, int64_t dim, Layout l, int rank, int world) {
  dim = dim < 0 ? dim + x.dim() : dim;
  RAVENSP_CHECK(dim >= 0 && dim < x.dim(), "shard: dim out of range for a ", x.dim(),
                "-d tensor");
  const int64_t total = x.size(dim), per = world * segments_per_rank(l);
  RAVENSP_CHECK(total % per == 0, "shard: sequence length ", total, " (dim ", dim,
                ") must be divisible by ", per, " = world size ", world, " x ",
                segments_per_rank(l), " segments per rank (", layout_name(l), " layout)");
  std::vector<at::Tensor> parts;
  for (const Segment& s : local_segments(l, rank, world, total / world))
    parts.push_back(x.narrow(dim, s.global_start, s.length));
  return parts.size() == 1 ? parts[0].contiguous() : at::cat(parts, dim);
}

at::Tensor unshard(const std::vector<at::Tensor>& shards, int64_t dim, Layout l) {
  RAVENSP_CHECK(!shards.empty(), "unshard: no shards given");
  const int world = static_cast<int>(shards.size());
  dim = dim < 0 ? dim + shards[0].dim() : dim;
  const int64_t local_len = shards[0].size(dim);
  std::vector<at::Tensor> ordered(world * segments_per_rank(l));
  for (int r = 0; r < world; ++r) {
    RAVENSP_CHECK(shards[r].size(dim) == local_len, "unshard: shard ", r, " has length ",
                  shards[r].size(dim), " along dim ", dim, ", expected ", local_len);
    for (const Segment& s : local_segments(l, r, world, local_len))
      ordered[s.index] = shards[r].narrow(dim, s.local_start, s.length);
  }
  return at::cat(ordered, dim);
}

}  // namespace ravensp::sp
