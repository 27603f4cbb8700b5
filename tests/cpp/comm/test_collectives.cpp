// Collectives and point-to-point on every rank, for both host backends, with data
// that names its sender (rank * 1000 + i), so a misplaced piece shows its origin.
#include <cstring>
#include <numeric>

#include "comm/host_reduce.h"
#include "comm_test_util.h"

namespace ravensp::comm::test {
namespace {

class Collectives : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { world = make_world(GetParam()); }
  std::unique_ptr<Communicator> world;
};

TEST_P(Collectives, RankAndSizeMatchMpiWorld) {
  EXPECT_EQ(world->rank(), world_rank());
  EXPECT_EQ(world->size(), world_size());
  EXPECT_EQ(world->backend(), GetParam());
}

TEST_P(Collectives, AllGatherPlacesEachRanksPiece) {
  for (size_t count : {size_t{1}, size_t{7}, size_t{1000}}) {
    int r = world->rank(), n = world->size();
    std::vector<int64_t> mine(count), all(count * n, -1);
    for (size_t i = 0; i < count; ++i) mine[i] = r * 1000 + static_cast<int64_t>(i);
    world->all_gather(host_buffer(mine.data(), count), host_buffer(all.data(), all.size()));
    for (int src = 0; src < n; ++src)
      for (size_t i = 0; i < count; ++i)
        ASSERT_EQ(all[src * count + i], src * 1000 + static_cast<int64_t>(i)) << "piece of rank " << src;
  }
}

TEST_P(Collectives, AllReduceSumAndMaxExact) {
  int r = world->rank(), n = world->size();
  const size_t count = 33;
  std::vector<double> x(count), sum(count), mx(count);
  for (size_t i = 0; i < count; ++i) x[i] = r * 1000.0 + i;
  world->all_reduce(host_buffer(x.data(), count), host_buffer(sum.data(), count), ReduceOp::kSum);
  world->all_reduce(host_buffer(x.data(), count), host_buffer(mx.data(), count), ReduceOp::kMax);
  for (size_t i = 0; i < count; ++i) {
    ASSERT_EQ(sum[i], 1000.0 * n * (n - 1) / 2 + static_cast<double>(n * i));
    ASSERT_EQ(mx[i], (n - 1) * 1000.0 + i);
  }
  // In place, int32.
  std::vector<int32_t> y(count);
  for (size_t i = 0; i < count; ++i) y[i] = r + 1;
  world->all_reduce(host_buffer(y.data(), count), host_buffer(y.data(), count));
  for (size_t i = 0; i < count; ++i) ASSERT_EQ(y[i], n * (n + 1) / 2);
}

TEST_P(Collectives, AllReduceHalfTypes) {
  // Small integers are exact in fp16 and bf16, so the sums are exact too.
  int r = world->rank(), n = world->size();
  for (DType dt : {DType::kFloat16, DType::kBFloat16}) {
    auto to16 = dt == DType::kFloat16 ? float_to_half : float_to_bf16;
    auto from16 = dt == DType::kFloat16 ? half_to_float : bf16_to_float;
    std::vector<uint16_t> x(5), out(5);
    for (int i = 0; i < 5; ++i) x[i] = to16(static_cast<float>(r * 4 + i));
    Buffer in{x.data(), 5, dt, Device{}, nullptr}, res{out.data(), 5, dt, Device{}, nullptr};
    world->all_reduce(in, res, ReduceOp::kSum);
    for (int i = 0; i < 5; ++i) ASSERT_EQ(from16(out[i]), 4.0f * n * (n - 1) / 2 + n * i) << dtype_name(dt);
    world->all_reduce(in, res, ReduceOp::kMax);
    for (int i = 0; i < 5; ++i) ASSERT_EQ(from16(out[i]), 4.0f * (n - 1) + i) << dtype_name(dt);
  }
}

TEST_P(Collectives, BroadcastFromEveryRoot) {
  for (int root = 0; root < world->size(); ++root) {
    std::vector<float> buf(17, -1.0f);
    if (world->rank() == root)
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = root * 1000.0f + i;
    world->broadcast(host_buffer(buf.data(), buf.size()), root);
    for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], root * 1000.0f + i) << "root " << root;
  }
}

TEST_P(Collectives, SendRecvRingBothWays) {
  // Every rank sends to both neighbours and receives from both in one batch: a
  // blocking implementation would deadlock here.
  int r = world->rank(), n = world->size();
  int next = (r + 1) % n, prev = (r + n - 1) % n;
  const size_t count = 100000;  // larger than socket buffers
  std::vector<int32_t> to_next(count), to_prev(count), from_prev(count, -1), from_next(count, -1);
  for (size_t i = 0; i < count; ++i) {
    to_next[i] = r * 1000 + static_cast<int32_t>(i % 1000);
    to_prev[i] = -(r * 1000 + static_cast<int32_t>(i % 1000));
  }
  world->send_recv({send_op(host_buffer(to_next.data(), count), next),
                    send_op(host_buffer(to_prev.data(), count), prev),
                    recv_op(host_buffer(from_prev.data(), count), prev),
                    recv_op(host_buffer(from_next.data(), count), next)});
  for (size_t i = 0; i < count; ++i) {
    ASSERT_EQ(from_prev[i], prev * 1000 + static_cast<int32_t>(i % 1000));
    ASSERT_EQ(from_next[i], -(next * 1000 + static_cast<int32_t>(i % 1000)));
  }
}

TEST_P(Collectives, SendRecvMessagesToOnePeerMatchInOrder) {
  int r = world->rank(), n = world->size();
  int next = (r + 1) % n, prev = (r + n - 1) % n;
  int64_t a = r * 1000 + 1, b = r * 1000 + 2, got_a = 0, got_b = 0;
  world->send_recv({send_op(host_buffer(&a, 1), next), send_op(host_buffer(&b, 1), next),
                    recv_op(host_buffer(&got_a, 1), prev), recv_op(host_buffer(&got_b, 1), prev)});
  EXPECT_EQ(got_a, prev * 1000 + 1);
  EXPECT_EQ(got_b, prev * 1000 + 2);
  // To itself.
  int64_t self = 0;
  world->send_recv({send_op(host_buffer(&a, 1), r), recv_op(host_buffer(&self, 1), r)});
  EXPECT_EQ(self, a);
}

TEST_P(Collectives, SplitByParityOrderedByKey) {
  int r = world->rank(), n = world->size();
  // Reverse order inside each group: key = -rank.
  auto sub = world->split(r % 2, -r, "parity");
  ASSERT_NE(sub, nullptr);
  std::vector<int> members;
  for (int j = n - 1; j >= 0; --j)
    if (j % 2 == r % 2) members.push_back(j);
  ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[sub->rank()], r);
  int64_t mine = r * 1000;
  std::vector<int64_t> all(sub->size());
  sub->all_gather(host_buffer(&mine, 1), host_buffer(all.data(), all.size()));
  for (size_t i = 0; i < members.size(); ++i) EXPECT_EQ(all[i], members[i] * 1000);
  // A rank with a negative color belongs to no group.
  auto none = world->split(r == 0 ? -1 : 0, r, "all-but-0");
  EXPECT_EQ(none == nullptr, r == 0);
  if (none) {
    EXPECT_EQ(none->size(), n - 1);
  }
  world->barrier();  // the parent still works after splitting
}

TEST_P(Collectives, DpSpMeshGroupsNeighboursForSp) {
  int r = world->rank(), n = world->size();
  for (int sp_size = 1; sp_size <= n; ++sp_size) {
    if (n % sp_size) continue;
    Mesh mesh = make_dp_sp_mesh(*world, sp_size);
    ASSERT_EQ(mesh.sp->size(), sp_size);
    ASSERT_EQ(mesh.dp->size(), n / sp_size);
    EXPECT_EQ(mesh.sp->rank(), r % sp_size);
    EXPECT_EQ(mesh.dp->rank(), r / sp_size);
    int64_t mine = r * 1000, sp_sum = 0, dp_sum = 0;
    mesh.sp->all_reduce(host_buffer(&mine, 1), host_buffer(&sp_sum, 1));
    mesh.dp->all_reduce(host_buffer(&mine, 1), host_buffer(&dp_sum, 1));
    int64_t want_sp = 0, want_dp = 0;
    for (int j = 0; j < n; ++j) {
      if (j / sp_size == r / sp_size) want_sp += j * 1000;
      if (j % sp_size == r % sp_size) want_dp += j * 1000;
    }
    EXPECT_EQ(sp_sum, want_sp) << "sp_size " << sp_size;
    EXPECT_EQ(dp_sum, want_dp) << "sp_size " << sp_size;
  }
}

TEST_P(Collectives, ZeroCountIsANoOpOnEveryRank) {
  world->all_gather(Buffer{nullptr, 0, DType::kFloat32, Device{}, nullptr},
                    Buffer{nullptr, 0, DType::kFloat32, Device{}, nullptr});
  world->all_reduce(Buffer{nullptr, 0, DType::kFloat32, Device{}, nullptr},
                    Buffer{nullptr, 0, DType::kFloat32, Device{}, nullptr});
  world->barrier();
}

INSTANTIATE_TEST_SUITE_P(HostBackends, Collectives, testing::Values(Backend::kMpi, Backend::kTcp), BackendName());

}  // namespace
}  // namespace ravensp::comm::test
