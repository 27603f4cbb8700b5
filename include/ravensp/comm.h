// The communication room's public face: one Communicator interface (all-gather,
// all-reduce, grouped send/recv, broadcast, barrier, split) over buffers described
// as (pointer, count, dtype, device, stream), with MPI, TCP-socket (host memory)
// and NCCL (device memory) backends, their bootstraps and the dp x sp mesh.
// Depends on check.h only: no torch, MPI or NCCL header leaks out of here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ravensp/check.h"

namespace ravensp::comm {

enum class DType : uint8_t { kInt8, kUInt8, kInt32, kInt64, kFloat16, kBFloat16, kFloat32, kFloat64 };
size_t dtype_size(DType dt);
const char* dtype_name(DType dt);

enum class DeviceType : uint8_t { kCPU, kCUDA };
struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;  // CUDA ordinal; 0 for the host
};
std::string device_str(const Device& d);  // "cpu", "cuda:1"

// A contiguous run of `count` elements. `stream` is the caller's cudaStream_t for
// CUDA buffers (nullptr = legacy default stream); ignored for host buffers.
struct Buffer {
  void* data = nullptr;
  size_t count = 0;
  DType dtype = DType::kFloat32;
  Device device{};
  void* stream = nullptr;
  size_t bytes() const { return count * dtype_size(dtype); }
};

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<int8_t>() { return DType::kInt8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::kUInt8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kInt32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kInt64; }
template <> constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <> constexpr DType dtype_of<double>() { return DType::kFloat64; }

template <typename T>
Buffer host_buffer(T* data, size_t count) {
  return Buffer{data, count, dtype_of<T>(), Device{}, nullptr};
}
inline Buffer cuda_buffer(void* data, size_t count, DType dt, int device, void* stream) {
  return Buffer{data, count, dt, Device{DeviceType::kCUDA, device}, stream};
}

enum class ReduceOp : uint8_t { kSum, kMax };
const char* reduce_op_name(ReduceOp op);

enum class P2PKind : uint8_t { kSend, kRecv };
struct P2POp {
  P2PKind kind;
  Buffer buf;
  int peer;  // rank within the communicator
};
inline P2POp send_op(const Buffer& b, int peer) { return P2POp{P2PKind::kSend, b, peer}; }
inline P2POp recv_op(const Buffer& b, int peer) { return P2POp{P2PKind::kRecv, b, peer}; }

enum class Backend : uint8_t { kMpi, kTcp, kNccl };
const char* backend_name(Backend b);

// Every blocking wait of every backend ends at this many seconds. The one
// declaration of RAVENSP_COMM_TIMEOUT_S (docs/comm.md): default 600, read each
// time a communicator is created; set_timeout() overrides it per communicator.
inline constexpr const char* kTimeoutEnv = "RAVENSP_COMM_TIMEOUT_S";
inline constexpr double kDefaultTimeoutS = 600.0;
double timeout_from_env();

// Arguments are validated (locally, before anything is enqueued) by these
// public methods; backends implement the *_impl hooks. Calls are collective over
// the group and must be issued in the same order on every member. After a
// timeout or a transport error the communicator is poisoned: later calls throw
// naming the first failure, since the transport state can no longer be trusted.
class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Backend backend() const = 0;
  // The memory the backend moves: kCPU for MPI/TCP, kCUDA for NCCL.
  virtual DeviceType memory() const = 0;
  const std::string& name() const { return name_; }
  double timeout_s() const { return timeout_s_; }
  void set_timeout(double seconds);

  // recv.count == size() * send.count; rank r's piece lands at recv[r * send.count].
  void all_gather(const Buffer& send, const Buffer& recv);
  // send and recv may be the same buffer (in place).
  void all_reduce(const Buffer& send, const Buffer& recv, ReduceOp op = ReduceOp::kSum);
  void broadcast(const Buffer& buf, int root);
  // The whole batch is issued together (NCCL group / MPI Isend+Irecv+Waitall), so a
  // ring where every rank sends and receives cannot deadlock. Between one pair of
  // ranks messages match in issue order.
  void send_recv(const std::vector<P2POp>& ops);
  void barrier();
  // Ranks with the same color form a group ordered by (key, old rank); color < 0
  // means "in no group" and returns nullptr. Collective over this communicator.
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name);
  // Host-side wait for everything enqueued so far (NCCL: device completion, under the
  // deadline); a no-op for the host backends, whose calls return when done.
  virtual void synchronize() {}

  // "[mpi 'world' rank 1/4]" for messages.
  std::string who() const;

 protected:
  explicit Communicator(std::string name);
  virtual void all_gather_impl(const Buffer& send, const Buffer& recv) = 0;
  virtual void all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp op) = 0;
  virtual void broadcast_impl(const Buffer& buf, int root) = 0;
  virtual void send_recv_impl(const std::vector<P2POp>& ops) = 0;
  virtual void barrier_impl() = 0;
  virtual std::unique_ptr<Communicator> split_impl(int color, int key, const std::string& name) = 0;
  // Records the first failure; every later call throws it again.
  [[noreturn]] void fail(const std::string& msg);
  void check_usable() const;
  void check_buffer(const Buffer& b, const char* op, const char* arg) const;

 private:
  std::string name_;
  double timeout_s_;
  std::string poisoned_;
};

// ---- data-parallel x sequence-parallel mesh --------------------------------
// Ranks [d * sp_size, (d + 1) * sp_size) form sequence-parallel group d, so an SP
// group stays on neighbouring ranks (one node); dp groups stride by sp_size.
struct Mesh {
  std::unique_ptr<Communicator> dp;
  std::unique_ptr<Communicator> sp;
};
Mesh make_dp_sp_mesh(Communicator& world, int sp_size);

// ---- TCP store: the torchrun rendezvous ------------------------------------
// Rank 0 serves a key/value table on host:port (port 0 picks a free one, see
// port()); every rank, rank 0 included, is a client. get() waits for a key up to
// the deadline. The server's destructor waits (bounded) for clients to leave.
class TcpStore {
 public:
  TcpStore(const std::string& host, int port, bool is_server, int rank, double timeout_s);
  ~TcpStore();
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  void set(const std::string& key, const std::string& value);
  std::string get(const std::string& key);  // waits up to timeout_s
  bool check(const std::string& key);       // present now?
  int64_t add(const std::string& key, int64_t delta);
  // Waits until `n` ranks have called wait_all(name, n).
  void wait_all(const std::string& name, int n);
  int port() const;
  int rank() const { return rank_; }
  double timeout_s() const { return timeout_s_; }
  // The local address this client reaches the server from: routable by peers.
  std::string local_address() const;

 private:
  struct Server;
  struct Client;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  int rank_;
  double timeout_s_;
};

// ---- bootstraps ------------------------------------------------------------
enum class Launcher : uint8_t { kNone, kMpi, kTorchrun };
struct LaunchEnv {
  Launcher launcher = Launcher::kNone;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;  // torchrun only
  int master_port = 0;      // torchrun only
};
// Reads OMPI_COMM_WORLD_* / PMIX_RANK / PMI_* / SLURM_* (mpirun, srun), else
// RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT (torchrun).
LaunchEnv detect_launch_env();

bool mpi_enabled();   // built with RAVENSP_WITH_MPI
bool nccl_enabled();  // built with RAVENSP_WITH_NCCL
// MPI_Init_thread if nobody has (MPI is then finalized at exit), and a private
// duplicate of MPI_COMM_WORLD.
std::unique_ptr<Communicator> init_mpi_world();
// Wraps (duplicates) an existing communicator given by its Fortran handle
// (MPI_Comm_c2f; mpi4py's comm.py2f()), so Python can hand one over without MPI types.
std::unique_ptr<Communicator> mpi_from_fortran_handle(int64_t handle);
// A TCP-socket host backend over a store: the CPU backend of torchrun jobs.
std::unique_ptr<Communicator> init_tcp(TcpStore& store, int rank, int size, const std::string& name);
// torchrun env -> TcpStore -> init_tcp. Rank 0 serves the store on MASTER_ADDR at
// RAVENSP_STORE_PORT, default MASTER_PORT + 1 (torchrun's agent holds MASTER_PORT);
// the store is closed once every mesh link is up.
std::unique_ptr<Communicator> init_tcp_from_env();

// NCCL: the unique id is opaque bytes so that Python (torch.distributed) or any
// host communicator can carry it.
using NcclUniqueId = std::array<uint8_t, 128>;
NcclUniqueId nccl_unique_id();
std::unique_ptr<Communicator> init_nccl(const NcclUniqueId& id, int rank, int size, int device);
// Rank 0 makes the id and broadcasts it over a host communicator (MPI or TCP).
std::unique_ptr<Communicator> init_nccl(Communicator& host, int device);
// Rank 0 publishes the id in the store under `key`; the others wait for it.
std::unique_ptr<Communicator> init_nccl(TcpStore& store, int rank, int size, int device,
                                        const std::string& key = "ravensp/nccl_unique_id");

}  // namespace ravensp::comm
