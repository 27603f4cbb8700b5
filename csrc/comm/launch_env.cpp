// Reading the launcher's environment (mpirun, srun, torchrun) and the torchrun
// bootstrap of the TCP backend. RAVENSP_STORE_PORT is declared here.
#include <cerrno>
#include <cstdlib>

#include "ravensp/comm.h"

namespace ravensp::comm {
namespace {

// torchrun's agent already serves its own TCPStore on MASTER_PORT, so ours
// listens on MASTER_PORT + 1 unless this knob names a port (docs/comm.md).
constexpr const char* kStorePortEnv = "RAVENSP_STORE_PORT";

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* s = env(name);
  if (s == nullptr) return fallback;
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  RAVENSP_CHECK(errno == 0 && end != s && *end == '\0' && v >= 0 && v <= INT32_MAX, "environment variable ", name,
                " must be a non-negative integer, got '", s, "'");
  return static_cast<int>(v);
}

LaunchEnv from(Launcher l, const char* rank, const char* size, const char* local) {
  LaunchEnv e;
  e.launcher = l;
  e.rank = env_int(rank, 0);
  e.world_size = env_int(size, 1);
  e.local_rank = env_int(local, 0);
  RAVENSP_CHECK(e.world_size > 0 && e.rank < e.world_size, "launch environment: ", rank, "=", e.rank,
                " must be < ", size, "=", e.world_size);
  return e;
}

}  // namespace

LaunchEnv detect_launch_env() {
  // Explicit MPI launchers first; then torchrun (which may itself run under a
  // SLURM allocation, so SLURM_* comes last).
  if (env("OMPI_COMM_WORLD_RANK") && env("OMPI_COMM_WORLD_SIZE"))
    return from(Launcher::kMpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK");
  if (env("PMI_RANK") && env("PMI_SIZE")) return from(Launcher::kMpi, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID");
  if (env("RANK") && env("WORLD_SIZE")) {
    LaunchEnv e = from(Launcher::kTorchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK");
    RAVENSP_CHECK(env("MASTER_ADDR") && env("MASTER_PORT"), "torchrun environment: RANK and WORLD_SIZE are set but ",
                  "MASTER_ADDR and MASTER_PORT are not");
    e.master_addr = env("MASTER_ADDR");
    e.master_port = env_int("MASTER_PORT", 0);
    return e;
  }
  if (env("SLURM_PROCID") && env("SLURM_NTASKS"))
    return from(Launcher::kMpi, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID");
  return LaunchEnv{};
}

std::unique_ptr<Communicator> init_tcp_from_env() {
  LaunchEnv e = detect_launch_env();
  RAVENSP_CHECK(e.launcher == Launcher::kTorchrun, "init_tcp_from_env needs the torchrun environment (RANK, ",
                "WORLD_SIZE, MASTER_ADDR, MASTER_PORT); none was found");
  int port = env_int(kStorePortEnv, e.master_port + 1);
  RAVENSP_CHECK(port > 0 && port < 65536, kStorePortEnv, " / MASTER_PORT + 1 gives port ", port,
                ", outside [1, 65535]");
  // The store is only the rendezvous: once every mesh link is up (init_tcp ends
  // with a barrier) no rank reads it again, and it is closed here.
  TcpStore store(e.master_addr, port, e.rank == 0, e.rank, timeout_from_env());
  return init_tcp(store, e.rank, e.world_size, "world");
}

Mesh make_dp_sp_mesh(Communicator& world, int sp_size) {
  int n = world.size();
  RAVENSP_CHECK(sp_size > 0 && n % sp_size == 0, world.who(), " make_dp_sp_mesh: sp_size must divide the world size ",
                n, ", got sp_size ", sp_size);
  int r = world.rank();
  Mesh m;
  m.sp = world.split(r / sp_size, r, "sp" + std::to_string(r / sp_size));
  m.dp = world.split(r % sp_size, r, "dp" + std::to_string(r % sp_size));
  return m;
}

}  // namespace ravensp::comm
