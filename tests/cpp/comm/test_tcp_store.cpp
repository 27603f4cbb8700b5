// The TCP store across ranks (port chosen by rank 0), the launcher-environment
// bootstrap of the TCP backend (torchrun's variables, simulated under mpirun), and
// the MPI launch detection.
#include <chrono>

#include "comm/socket.h"
#include "comm_test_util.h"

namespace ravensp::comm::test {
namespace {

TEST(TcpStoreMultiRank, SetGetAcrossRanks) {
  auto store = make_store(10.0);
  int r = world_rank(), n = world_size();
  store->set("value/" + std::to_string(r), "from rank " + std::to_string(r * 1000));
  for (int j = 0; j < n; ++j) EXPECT_EQ(store->get("value/" + std::to_string(j)), "from rank " + std::to_string(j * 1000));
  // A binary value (the NCCL unique id travels this way).
  std::string bin(128, '\0');
  for (int i = 0; i < 128; ++i) bin[i] = static_cast<char>(i * 7 + r);
  if (r == 0) store->set("binary", bin);
  if (r != 0) {
    std::string got = store->get("binary");
    ASSERT_EQ(got.size(), 128u);
    for (int i = 0; i < 128; ++i) EXPECT_EQ(static_cast<unsigned char>(got[i]), static_cast<unsigned char>(i * 7));
  }
  EXPECT_GE(store->add("counter", r + 1), 1);
  store->wait_all("after-add", n);
  EXPECT_EQ(store->add("counter", 0), n * (n + 1) / 2);
  store->wait_all("done", n);
}

TEST(TcpStoreMultiRank, MissingKeyTimesOutWithAClearMessage) {
  auto store = make_store(1.0);
  int r = world_rank();
  auto t0 = std::chrono::steady_clock::now();
  std::string m = error_of([&] { store->get("never-set/" + std::to_string(r)); });
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_HAS(m, "tcp store rank " + std::to_string(r) + " get('never-set/" + std::to_string(r) + "') timed out after");
  EXPECT_HAS(m, "no rank has set the key");
  EXPECT_GE(waited, 1.0);
  EXPECT_LT(waited, 4.0);
  EXPECT_FALSE(store->check("never-set/0"));
}

TEST(LaunchEnv, DetectsMpirun) {
  LaunchEnv e = detect_launch_env();
  EXPECT_EQ(e.launcher, Launcher::kMpi);
  EXPECT_EQ(e.rank, world_rank());
  EXPECT_EQ(e.world_size, world_size());
}

// Hides the MPI launcher's variables and sets torchrun's for a scope.
class TorchrunEnv {
 public:
  TorchrunEnv(int rank, int size, int master_port) {
    for (const char* k : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE"}) {
      const char* v = getenv(k);
      if (v) saved_.emplace_back(k, v);
      unsetenv(k);
    }
    setenv("RANK", std::to_string(rank).c_str(), 1);
    setenv("WORLD_SIZE", std::to_string(size).c_str(), 1);
    setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", std::to_string(master_port).c_str(), 1);
  }
  ~TorchrunEnv() {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(k);
    for (auto& [k, v] : saved_) setenv(k.c_str(), v.c_str(), 1);
  }

 private:
  std::vector<std::pair<std::string, std::string>> saved_;
};

TEST(LaunchEnv, TorchrunEnvironmentBootstrapsTheTcpBackend) {
  int port = 0;
  if (world_rank() == 0) {
    // A free port for the store; MASTER_PORT is one below it (torchrun's agent
    // would hold MASTER_PORT itself).
    Socket probe = listen_any(0, 1);
    port = local_port(probe);
  }
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  TorchrunEnv env(world_rank(), world_size(), port - 1);
  LaunchEnv e = detect_launch_env();
  EXPECT_EQ(e.launcher, Launcher::kTorchrun);
  EXPECT_EQ(e.master_port, port - 1);
  auto world = init_tcp_from_env();
  EXPECT_EQ(world->backend(), Backend::kTcp);
  EXPECT_EQ(world->rank(), world_rank());
  int64_t mine = world_rank() * 1000, sum = 0;
  world->all_reduce(host_buffer(&mine, 1), host_buffer(&sum, 1));
  EXPECT_EQ(sum, 1000LL * world_size() * (world_size() - 1) / 2);
}

}  // namespace
}  // namespace ravensp::comm::test
