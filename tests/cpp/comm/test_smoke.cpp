// The multi-rank harness check CI runs first (comm_smoke_2ranks): MPI comes up,
// the ranks agree on who is who, and one all-reduce returns the known sum.
#include "comm_test_util.h"

namespace ravensp::comm::test {
namespace {

TEST(Smoke, WorldAllReduce) {
  auto world = init_mpi_world();
  ASSERT_EQ(world->size(), world_size());
  int64_t mine = world->rank() * 1000 + 1, sum = 0;
  world->all_reduce(host_buffer(&mine, 1), host_buffer(&sum, 1));
  int n = world->size();
  EXPECT_EQ(sum, 1000LL * n * (n - 1) / 2 + n);
  world->barrier();
}

}  // namespace
}  // namespace ravensp::comm::test
