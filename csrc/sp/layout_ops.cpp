// Torch ops over the layout helpers and the SP group, so Python (and compiled
// graphs) use the one C++ definition of each layout instead of a second copy.
#include <torch/library.h>

#include "ops/op_boundary.h"
#include "ravensp/check.h"
#include "ravensp/sp.h"
#include "sp/comm_tensor.h"

namespace ravensp::sp {
namespace {

at::Tensor shard_op(const at::Tensor& x, int64_t dim, int64_t layout, int64_t rank, int64_t world) {
  return shard(x, dim, layout_from_int(layout), static_cast<int>(rank), static_cast<int>(world));
}

at::Tensor unshard_op(at::TensorList shards, int64_t dim, int64_t layout) {
  return unshard(shards.vec(), dim, layout_from_int(layout));
}

at::Tensor positions_op(int64_t layout, int64_t rank, int64_t world, int64_t local_len,
                        const at::Tensor& like) {
  return global_positions(layout_from_int(layout), static_cast<int>(rank),
                          static_cast<int>(world), local_len, like.device());
}

// [P, *x.shape]: every rank's x, in rank order (tests, metrics; no autograd).
at::Tensor all_gather_op(const at::Tensor& x, int64_t group_handle) {
  comm::Communicator& c = group(group_handle);
  check_group_memory("sp_all_gather", c, x);
  at::Tensor send = x.contiguous();
  std::vector<int64_t> shape{c.size()};
  for (int64_t d : x.sizes()) shape.push_back(d);
  at::Tensor recv = at::empty(shape, send.options());
  c.all_gather(to_buffer(send), to_buffer(recv));
  return recv;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ravensp, m) {
  m.def("sp_shard(Tensor x, int dim, int layout, int rank, int world) -> Tensor");
  m.def("sp_unshard(Tensor[] shards, int dim, int layout) -> Tensor");
  m.def("sp_positions(int layout, int rank, int world, int local_len, Tensor like) -> Tensor");
  m.def("sp_all_gather(Tensor x, int group) -> Tensor");
}

TORCH_LIBRARY_IMPL(ravensp, CompositeExplicitAutograd, m) {
  m.impl("sp_shard", RAVENSP_OP(shard_op));
  m.impl("sp_unshard", RAVENSP_OP(unshard_op));
  m.impl("sp_positions", RAVENSP_OP(positions_op));
  m.impl("sp_all_gather", RAVENSP_OP(all_gather_op));
}

}  // namespace ravensp::sp
