// Failure paths on every rank: bad arguments rejected before anything is sent, a
// stuck peer ending in a timeout that names the rank, peer and op, a dead peer
// and sizes that disagree between ranks reported as such.
#include <chrono>

#include "comm_test_util.h"

namespace ravensp::comm::test {
namespace {

class Errors : public testing::TestWithParam<Backend> {};

TEST_P(Errors, BadArgumentsAreRejectedLocallyAndLeaveTheCommUsable) {
  auto world = make_world(GetParam());
  int n = world->size();
  std::vector<float> a(4), b(4 * n + 1);
  std::string rank_tag = "rank " + std::to_string(world->rank()) + "/" + std::to_string(n);

  std::string m = error_of([&] { world->all_gather(host_buffer(a.data(), 4), host_buffer(b.data(), 4 * n + 1)); });
  EXPECT_HAS(m, "all_gather: recv.count must be size * send.count");
  EXPECT_HAS(m, "got " + std::to_string(4 * n + 1));
  EXPECT_HAS(m, rank_tag);

  m = error_of([&] { world->all_reduce(host_buffer(a.data(), 4), host_buffer(b.data(), 3)); });
  EXPECT_HAS(m, "all_reduce: send.count 4 != recv.count 3");

  m = error_of([&] { world->all_reduce(Buffer{nullptr, 4, DType::kFloat32, Device{}, nullptr}, host_buffer(a.data(), 4)); });
  EXPECT_HAS(m, "all_reduce: send.data is null with count 4");

  std::vector<int32_t> ints(4);
  m = error_of([&] { world->all_reduce(host_buffer(a.data(), 4), host_buffer(ints.data(), 4)); });
  EXPECT_HAS(m, "send dtype fp32 != recv dtype int32");

  m = error_of([&] { world->broadcast(host_buffer(a.data(), 4), n); });
  EXPECT_HAS(m, "broadcast: root must be in [0, " + std::to_string(n) + "), got " + std::to_string(n));

  m = error_of([&] { world->send_recv({recv_op(host_buffer(a.data(), 4), -1)}); });
  EXPECT_HAS(m, "send_recv: op 0 (recv) peer must be in");

  m = error_of([&] { world->send_recv({send_op(Buffer{nullptr, 2, DType::kInt64, Device{}, nullptr}, 0)}); });
  EXPECT_HAS(m, "send_recv: send.data is null with count 2");

  m = error_of([&] { world->all_reduce(cuda_buffer(a.data(), 4, DType::kFloat32, 0, nullptr), host_buffer(a.data(), 4)); });
  EXPECT_HAS(m, "send is on cuda:0 but the " + std::string(backend_name(GetParam())) + " backend moves host memory");

  m = error_of([&] { make_dp_sp_mesh(*world, n + 1); });
  EXPECT_HAS(m, "sp_size must divide the world size " + std::to_string(n));

  m = error_of([&] { world->set_timeout(0); });
  EXPECT_HAS(m, "set_timeout: seconds must be > 0");

  // Nothing was enqueued, so the communicator still works on every rank.
  int64_t one = 1, total = 0;
  world->all_reduce(host_buffer(&one, 1), host_buffer(&total, 1));
  EXPECT_EQ(total, n);
}

TEST_P(Errors, StuckPeerInCollectiveTimesOutNamingRankAndOp) {
  ScopedTimeout timeout("1.5");
  auto world = make_world(GetParam());
  int r = world->rank(), n = world->size();
  int stuck = n - 1;  // never joins the all_reduce
  if (r != stuck) {
    double x = r, y = 0;
    auto t0 = std::chrono::steady_clock::now();
    std::string m = error_of([&] { world->all_reduce(host_buffer(&x, 1), host_buffer(&y, 1)); });
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_HAS(m, "rank " + std::to_string(r) + "/" + std::to_string(n));
    EXPECT_HAS(m, "all_reduce (sum, 1 x fp64)");
    EXPECT_HAS(m, "timed out after");
    EXPECT_HAS(m, "RAVENSP_COMM_TIMEOUT_S=1.5");
    // MPI cannot say which member is missing; TCP names the silent peer.
    EXPECT_HAS(m, GetParam() == Backend::kMpi ? "all ranks" : "recv from rank " + std::to_string(stuck));
    EXPECT_GE(waited, 1.5);
    EXPECT_LT(waited, 6.0);
    // Poisoned: the next call names the first failure instead of desynchronizing.
    m = error_of([&] { world->barrier(); });
    EXPECT_HAS(m, "unusable after an earlier failure");
    EXPECT_HAS(m, "all_reduce");
  }
  world_sync();
}

TEST_P(Errors, StuckPeerInSendRecvTimesOutNamingThePeer) {
  ScopedTimeout timeout("1");
  auto world = make_world(GetParam());
  int r = world->rank(), n = world->size();
  if (r == 0) {
    int32_t got = 0;
    auto t0 = std::chrono::steady_clock::now();
    std::string m = error_of([&] { world->send_recv({recv_op(host_buffer(&got, 1), 1)}); });
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_HAS(m, "rank 0/" + std::to_string(n));
    EXPECT_HAS(m, "send_recv");
    EXPECT_HAS(m, "recv from rank 1");
    EXPECT_HAS(m, "timed out after");
    EXPECT_GE(waited, 1.0);
    EXPECT_LT(waited, 5.0);
  }
  world_sync();
}

TEST_P(Errors, SizesThatDisagreeBetweenRanksAreReported) {
  auto world = make_world(GetParam());
  int r = world->rank();
  std::vector<int32_t> big(8, 7), small(4);
  if (r == 0) world->send_recv({send_op(host_buffer(big.data(), 8), 1)});
  if (r == 1) {
    std::string m = error_of([&] { world->send_recv({recv_op(host_buffer(small.data(), 4), 0)}); });
    EXPECT_HAS(m, "rank 1/");
    EXPECT_HAS(m, "recv from rank 0");
    if (GetParam() == Backend::kTcp) {
      EXPECT_HAS(m, "the peer sent 32 bytes, this rank expects 16");
    }
    if (GetParam() == Backend::kMpi) {
      EXPECT_HAS(m, "truncated");
    }
  }
  world_sync();
}

TEST(ErrorsTcp, DeadPeerIsReportedBeforeTheDeadline) {
  ScopedTimeout timeout("30");
  auto world = make_world(Backend::kTcp);
  int r = world->rank();
  world_sync();
  if (r == 1) world.reset();  // closes every socket, as a crashed process would
  world_sync();
  if (r == 0) {
    int32_t got = 0;
    auto t0 = std::chrono::steady_clock::now();
    std::string m = error_of([&] { world->send_recv({recv_op(host_buffer(&got, 1), 1)}); });
    EXPECT_HAS(m, "recv from rank 1");
    EXPECT_HAS(m, "the peer closed the connection");
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  }
  world_sync();
}

INSTANTIATE_TEST_SUITE_P(HostBackends, Errors, testing::Values(Backend::kMpi, Backend::kTcp), BackendName());

}  // namespace
}  // namespace ravensp::comm::test
