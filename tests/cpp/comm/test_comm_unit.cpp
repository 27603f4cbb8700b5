// Single-process tests of the comm room's pieces: dtype table, 16-bit float
// conversions and host reductions, the timeout knob, launch-environment parsing,
// the TCP store (server and client in one process) and no-backend errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "comm/host_reduce.h"
#include "ravensp/comm.h"

namespace ravensp::comm {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ravensp::Error";
  return "";
}
#define EXPECT_HAS(msg, part) EXPECT_NE(std::string(msg).find(part), std::string::npos) << "message: " << (msg)

TEST(CommTypes, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kInt8), 1u);
  EXPECT_EQ(dtype_size(DType::kBFloat16), 2u);
  EXPECT_EQ(dtype_size(DType::kFloat32), 4u);
  EXPECT_EQ(dtype_size(DType::kInt64), 8u);
  EXPECT_STREQ(dtype_name(DType::kFloat16), "fp16");
  EXPECT_EQ(device_str(Device{DeviceType::kCUDA, 3}), "cuda:3");
  Buffer b = host_buffer(static_cast<double*>(nullptr), 5);
  EXPECT_EQ(b.bytes(), 40u);
  EXPECT_EQ(b.dtype, DType::kFloat64);
}

TEST(HostReduce, HalfAndBf16RoundTripAndRound) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 1000.5f})
    EXPECT_EQ(half_to_float(float_to_half(v)), v) << v;
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(1e6f))));
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));
  EXPECT_EQ(half_to_float(float_to_half(2049.0f)), 2048.0f);  // ties to even
  EXPECT_EQ(half_to_float(float_to_half(2051.0f)), 2052.0f);
  for (float v : {0.0f, 1.0f, -3.0f, 256.0f, std::ldexp(1.5f, 100)}) EXPECT_EQ(bf16_to_float(float_to_bf16(v)), v) << v;
  EXPECT_EQ(bf16_to_float(float_to_bf16(257.0f)), 256.0f);  // ties to even
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

TEST(HostReduce, EveryDtypeSumAndMax) {
  int32_t a[3] = {1, -5, 7}, b[3] = {2, 3, -9};
  host_reduce(a, b, 3, DType::kInt32, ReduceOp::kSum);
  EXPECT_EQ(a[0], 3);
  EXPECT_EQ(a[1], -2);
  EXPECT_EQ(a[2], -2);
  double c[2] = {1.5, -1.0}, d[2] = {0.5, 4.0};
  host_reduce(c, d, 2, DType::kFloat64, ReduceOp::kMax);
  EXPECT_EQ(c[0], 1.5);
  EXPECT_EQ(c[1], 4.0);
  uint8_t e[2] = {200, 3}, f[2] = {100, 4};
  host_reduce(e, f, 2, DType::kUInt8, ReduceOp::kMax);
  EXPECT_EQ(e[0], 200);
  EXPECT_EQ(e[1], 4);
  uint16_t h[2] = {float_to_half(1.5f), float_to_half(-2.0f)}, g[2] = {float_to_half(2.0f), float_to_half(3.0f)};
  host_reduce(h, g, 2, DType::kFloat16, ReduceOp::kSum);
  EXPECT_EQ(half_to_float(h[0]), 3.5f);
  EXPECT_EQ(half_to_float(h[1]), 1.0f);
}

TEST(Timeout, EnvDefaultAndBadValues) {
  unsetenv(kTimeoutEnv);
  EXPECT_EQ(timeout_from_env(), kDefaultTimeoutS);
  setenv(kTimeoutEnv, "2.5", 1);
  EXPECT_EQ(timeout_from_env(), 2.5);
  setenv(kTimeoutEnv, "soon", 1);
  EXPECT_HAS(error_of([] { timeout_from_env(); }), "RAVENSP_COMM_TIMEOUT_S must be a positive number of seconds, got 'soon'");
  setenv(kTimeoutEnv, "-1", 1);
  EXPECT_HAS(error_of([] { timeout_from_env(); }), "got '-1'");
  unsetenv(kTimeoutEnv);
}

class CleanLaunchEnv : public testing::Test {
 protected:
  void SetUp() override { clear(); }
  void TearDown() override { clear(); }
  static void clear() {
    for (const char* k : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK",
                          "PMI_SIZE", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                          "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "MPI_LOCALRANKID"})
      unsetenv(k);
  }
};

TEST_F(CleanLaunchEnv, NoneTorchrunSrunAndMpi) {
  EXPECT_EQ(detect_launch_env().launcher, Launcher::kNone);
  setenv("SLURM_PROCID", "5", 1);
  setenv("SLURM_NTASKS", "8", 1);
  setenv("SLURM_LOCALID", "1", 1);
  LaunchEnv e = detect_launch_env();
  EXPECT_EQ(e.launcher, Launcher::kMpi);
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.local_rank, 1);
  // torchrun under a SLURM allocation: torchrun's variables win.
  setenv("RANK", "3", 1);
  setenv("WORLD_SIZE", "4", 1);
  setenv("MASTER_ADDR", "node7", 1);
  setenv("MASTER_PORT", "29500", 1);
  e = detect_launch_env();
  EXPECT_EQ(e.launcher, Launcher::kTorchrun);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.master_addr, "node7");
  EXPECT_EQ(e.master_port, 29500);
  setenv("OMPI_COMM_WORLD_RANK", "2", 1);
  setenv("OMPI_COMM_WORLD_SIZE", "6", 1);
  e = detect_launch_env();
  EXPECT_EQ(e.launcher, Launcher::kMpi);
  EXPECT_EQ(e.world_size, 6);
}

TEST_F(CleanLaunchEnv, BadValuesAreNamed) {
  setenv("RANK", "4", 1);
  setenv("WORLD_SIZE", "4", 1);
  setenv("MASTER_ADDR", "x", 1);
  setenv("MASTER_PORT", "1", 1);
  EXPECT_HAS(error_of([] { detect_launch_env(); }), "RANK=4 must be < WORLD_SIZE=4");
  setenv("RANK", "one", 1);
  EXPECT_HAS(error_of([] { detect_launch_env(); }), "RANK must be a non-negative integer, got 'one'");
  setenv("RANK", "0", 1);
  unsetenv("MASTER_PORT");
  EXPECT_HAS(error_of([] { detect_launch_env(); }), "MASTER_ADDR and MASTER_PORT are not");
  unsetenv("RANK");
  EXPECT_HAS(error_of([] { init_tcp_from_env(); }), "init_tcp_from_env needs the torchrun environment");
}

TEST(TcpStore, OneProcessServerAndClient) {
  TcpStore server("127.0.0.1", 0, true, 0, 0.5);
  ASSERT_GT(server.port(), 0);
  TcpStore client("localhost", server.port(), false, 1, 0.5);
  client.set("k", "v");
  EXPECT_EQ(server.get("k"), "v");
  EXPECT_TRUE(server.check("k"));
  EXPECT_FALSE(client.check("absent"));
  EXPECT_EQ(client.add("n", 5), 5);
  EXPECT_EQ(server.add("n", -2), 3);
  std::string m = error_of([&] { client.get("absent"); });
  EXPECT_HAS(m, "tcp store rank 1 get('absent') timed out after");
  m = error_of([&] { client.wait_all("barrier", 2); });
  EXPECT_HAS(m, "wait_all('barrier', 2) timed out");
  EXPECT_HAS(m, "only 1 of 2 ranks arrived");
  EXPECT_FALSE(client.local_address().empty());
}

TEST(TcpStore, ClientWithoutServerFailsAtTheDeadline) {
  std::string m = error_of([] { TcpStore c("127.0.0.1", 1, false, 3, 0.3); });
  EXPECT_HAS(m, "tcp store rank 3 connecting to 127.0.0.1:1");
  EXPECT_HAS(m, "cannot connect");
}

TEST(Backends, BuildFlagsAreReportedAndMissingOnesNamed) {
  // RAVENSP_TEST_WITH_* come from the same CMake switches that build the backends.
  EXPECT_EQ(mpi_enabled(), RAVENSP_TEST_WITH_MPI != 0);
  EXPECT_EQ(nccl_enabled(), RAVENSP_TEST_WITH_NCCL != 0);
  if (!nccl_enabled()) {
    EXPECT_HAS(error_of([] { nccl_unique_id(); }), "built without NCCL");
  }
  if (!mpi_enabled()) {
    EXPECT_HAS(error_of([] { init_mpi_world(); }), "built without MPI");
  }
}

}  // namespace
}  // namespace ravensp::comm
