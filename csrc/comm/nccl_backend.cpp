// The NCCL device backend; see nccl_backend.h. Every NCCL, CUDA and timeout
// failure becomes an Error naming this rank and the operation; a failure after
// enqueue aborts the communicator so no rank keeps spinning on the device.
#include "comm/nccl_backend.h"

#include <cstring>
#include <sstream>

namespace ravensp::comm {
namespace {

static_assert(sizeof(NcclUniqueId) == sizeof(ncclUniqueId), "NcclUniqueId must hold an ncclUniqueId");

// Makes `device` current for a scope and restores the caller's device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&prev_);
    if (prev_ != device) cudaSetDevice(device);
  }
  ~DeviceGuard() { cudaSetDevice(prev_); }

 private:
  int prev_ = 0;
};

ncclDataType_t nccl_dtype(DType dt) {
  switch (dt) {
    case DType::kInt8: return ncclInt8;
    case DType::kUInt8: return ncclUint8;
    case DType::kInt32: return ncclInt32;
    case DType::kInt64: return ncclInt64;
    case DType::kFloat16: return ncclFloat16;
    case DType::kBFloat16: return ncclBfloat16;
    case DType::kFloat32: return ncclFloat32;
    case DType::kFloat64: return ncclFloat64;
  }
  RAVENSP_CHECK(false, "nccl backend: unknown dtype value ", static_cast<int>(dt));
}

ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // calls return ncclInProgress; we poll them under our deadline
  return config;
}

std::string describe(const Buffer& b) { return std::to_string(b.count) + " x " + dtype_name(b.dtype); }

std::string nccl_error(ncclResult_t r, ncclComm_t comm) {
  std::string s = ncclGetErrorString(r);
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  if (last && *last) s += std::string(" (") + last + ")";
  return s;
}

}  // namespace

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(const NcclUniqueId& id, int rank, int size, int device,
                                                          const std::string& name) {
  RAVENSP_CHECK(size > 0 && rank >= 0 && rank < size, "init_nccl: rank must be in [0, size), got rank ", rank,
                " size ", size);
  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  RAVENSP_CHECK(e == cudaSuccess, "init_nccl rank ", rank, ": cudaGetDeviceCount failed: ", cudaGetErrorString(e));
  RAVENSP_CHECK(device >= 0 && device < ndev, "init_nccl rank ", rank, ": device must be in [0, ", ndev, "), got ",
                device);
  DeviceGuard guard(device);
  ncclUniqueId uid;
  std::memcpy(&uid, id.data(), sizeof(uid));
  ncclConfig_t config = nonblocking_config();
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, size, uid, rank, &config);
  RAVENSP_CHECK(r == ncclSuccess || r == ncclInProgress, "[nccl '", name, "' rank ", rank, "/", size,
                "] ncclCommInitRankConfig failed: ", nccl_error(r, nullptr));
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator(comm, device, name));
  c->rank_ = rank;  // known before init completes, for the messages of wait_ready
  c->size_ = size;
  c->wait_ready(comm, "communicator init with all ranks", Deadline(c->timeout_s()));
  int got_rank = -1, got_size = -1;
  ncclCommUserRank(comm, &got_rank);
  ncclCommCount(comm, &got_size);
  RAVENSP_CHECK(got_rank == rank && got_size == size, c->who(), " NCCL reports rank ", got_rank, "/", got_size);
  return c;
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, int device, const std::string& name)
    : Communicator(name), comm_(comm), device_(device) {
  DeviceGuard guard(device_);
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", "init");
  check_cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags", "init");
  check_cuda(cudaMalloc(&barrier_word_, sizeof(int)), "cudaMalloc", "init");
  watchdog_ = std::make_unique<NcclWatchdog>(comm_, device_, timeout_s(),
                                             [this](const std::string& why) { abort_now(why); });
}

NcclCommunicator::~NcclCommunicator() {
  DeviceGuard guard(device_);
  std::string err = watchdog_ ? watchdog_->drain(timeout_s()) : "";
  watchdog_.reset();  // joins the thread: nothing else touches comm_ after this
  if (!aborted_ && comm_ && err.empty()) {
    // Finalize flushes outstanding work; polled under the deadline, else abort.
    ncclResult_t fr = ncclCommFinalize(comm_);
    bool clean = fr == ncclSuccess || fr == ncclInProgress;
    Deadline dl(timeout_s());
    ncclResult_t state = ncclInProgress;
    while (clean && ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
           !dl.expired())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (clean && state == ncclSuccess) ncclCommDestroy(comm_);
    else ncclCommAbort(comm_);
  } else if (!aborted_ && comm_) {
    ncclCommAbort(comm_);
  }
  if (barrier_word_) cudaFree(barrier_word_);
  if (ready_) cudaEventDestroy(ready_);
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::abort_now(const std::string&) {
  std::lock_guard<std::mutex> g(mutex_);
  if (aborted_ || !comm_) return;
  aborted_ = true;
  ncclCommAbort(comm_);
}

void NcclCommunicator::check_cuda(cudaError_t e, const char* call, const std::string& op) {
  if (e != cudaSuccess) fail(op + ": " + call + " failed: " + cudaGetErrorString(e));
}

void NcclCommunicator::check_device(const Buffer& b, const char* op) const {
  RAVENSP_CHECK(b.device.index == device_, who(), " ", op, ": buffer is on ", device_str(b.device),
                " but this communicator runs on cuda:", device_);
}

void NcclCommunicator::wait_ready(ncclComm_t comm, const std::string& op, const Deadline& deadline) {
  Backoff backoff;
  while (true) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      std::string msg = op + ": NCCL error: " + nccl_error(state, comm);
      ncclCommAbort(comm);
      if (comm == comm_) aborted_ = true;
      fail(msg);
    }
    if (deadline.expired()) {
      std::ostringstream os;
      os << op << " timed out after " << deadline.elapsed_s() << " s (" << kTimeoutEnv << "=" << timeout_s()
         << "); communicator aborted";
      ncclCommAbort(comm);
      if (comm == comm_) aborted_ = true;
      fail(os.str());
    }
    backoff.pause();
  }
}

void NcclCommunicator::enqueue(const std::string& op, cudaStream_t caller,
                               const std::function<ncclResult_t()>& issue) {
  std::string err = watchdog_->error();
  if (!err.empty()) fail(op + ": communicator aborted earlier: " + err);
  std::lock_guard<std::mutex> g(mutex_);
  if (aborted_) fail(op + ": communicator was aborted");
  DeviceGuard guard(device_);
  watchdog_->set_timeout(timeout_s());
  check_cuda(cudaEventRecord(ready_, caller), "cudaEventRecord (caller stream)", op);
  check_cuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent (comm stream)", op);
  ncclResult_t r = ncclGroupStart();
  if (r == ncclSuccess) {
    ncclResult_t ri = issue();
    r = ncclGroupEnd();
    if (ri != ncclSuccess && ri != ncclInProgress) r = ri;
  }
  if (r != ncclSuccess && r != ncclInProgress) {
    std::string msg = op + ": NCCL error: " + nccl_error(r, comm_);
    ncclCommAbort(comm_);
    aborted_ = true;
    fail(msg);
  }
  wait_ready(comm_, op, Deadline(timeout_s()));
  cudaEvent_t done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags", op);
  check_cuda(cudaEventRecord(done, stream_), "cudaEventRecord (comm stream)", op);
  check_cuda(cudaStreamWaitEvent(caller, done, 0), "cudaStreamWaitEvent (caller stream)", op);
  watchdog_->track(done, op);
}

void NcclCommunicator::all_gather_impl(const Buffer& send, const Buffer& recv) {
  check_device(send, "all_gather");
  check_device(recv, "all_gather");
  RAVENSP_CHECK(send.stream == recv.stream, who(), " all_gather: send and recv must name the same stream");
  std::string op = "all_gather (" + describe(send) + " per rank) with all ranks";
  enqueue(op, static_cast<cudaStream_t>(recv.stream), [&] {
    return ncclAllGather(send.data, recv.data, send.count, nccl_dtype(send.dtype), comm_, stream_);
  });
}

void NcclCommunicator::all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp rop) {
  check_device(send, "all_reduce");
  check_device(recv, "all_reduce");
  RAVENSP_CHECK(send.stream == recv.stream, who(), " all_reduce: send and recv must name the same stream");
  std::string op = std::string("all_reduce (") + reduce_op_name(rop) + ", " + describe(send) + ") with all ranks";
  ncclRedOp_t nop = rop == ReduceOp::kSum ? ncclSum : ncclMax;
  enqueue(op, static_cast<cudaStream_t>(recv.stream), [&] {
    return ncclAllReduce(send.data, recv.data, send.count, nccl_dtype(send.dtype), nop, comm_, stream_);
  });
}

void NcclCommunicator::broadcast_impl(const Buffer& buf, int root) {
  check_device(buf, "broadcast");
  std::string op = "broadcast (" + describe(buf) + " from root " + std::to_string(root) + ")";
  enqueue(op, static_cast<cudaStream_t>(buf.stream), [&] {
    return ncclBroadcast(buf.data, buf.data, buf.count, nccl_dtype(buf.dtype), root, comm_, stream_);
  });
}

void NcclCommunicator::send_recv_impl(const std::vector<P2POp>& ops) {
  std::ostringstream peers;
  for (size_t i = 0; i < ops.size(); ++i) {
    check_device(ops[i].buf, "send_recv");
    RAVENSP_CHECK(ops[i].buf.stream == ops[0].buf.stream, who(), " send_recv: op ", i,
                  " names a different stream than op 0; one batch runs after one caller stream");
    peers << (i ? ", " : "") << (ops[i].kind == P2PKind::kSend ? "send to " : "recv from ") << ops[i].peer;
  }
  std::string op = "send_recv (" + peers.str() + ")";
  enqueue(op, static_cast<cudaStream_t>(ops[0].buf.stream), [&] {
    for (const P2POp& p : ops) {
      ncclResult_t r = p.kind == P2PKind::kSend
                           ? ncclSend(p.buf.data, p.buf.count, nccl_dtype(p.buf.dtype), p.peer, comm_, stream_)
                           : ncclRecv(p.buf.data, p.buf.count, nccl_dtype(p.buf.dtype), p.peer, comm_, stream_);
      if (r != ncclSuccess && r != ncclInProgress) return r;
    }
    return ncclSuccess;
  });
}

void NcclCommunicator::barrier_impl() {
  // NCCL has no barrier: a one-word all-reduce on the comm stream, waited for on the host.
  enqueue("barrier with all ranks", stream_, [&] {
    return ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, comm_, stream_);
  });
  synchronize();
}

void NcclCommunicator::synchronize() {
  check_usable();
  std::string err = watchdog_->drain(timeout_s());
  if (!err.empty()) fail("synchronize: " + err);
}

std::unique_ptr<Communicator> NcclCommunicator::split_impl(int color, int key, const std::string& name) {
  std::string op = "split (color " + std::to_string(color) + ", key " + std::to_string(key) + ") with all ranks";
  std::lock_guard<std::mutex> g(mutex_);
  if (aborted_) fail(op + ": communicator was aborted");
  DeviceGuard guard(device_);
  ncclConfig_t config = nonblocking_config();
  ncclComm_t sub = nullptr;
  ncclResult_t r = ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &sub, &config);
  if (r != ncclSuccess && r != ncclInProgress) fail(op + ": ncclCommSplit failed: " + nccl_error(r, comm_));
  Deadline deadline(timeout_s());
  wait_ready(comm_, op, deadline);
  if (sub == nullptr) return nullptr;
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator(sub, device_, name));
  c->set_timeout(timeout_s());
  c->wait_ready(sub, "split '" + name + "' with all ranks of the new group", deadline);
  // Rank and size are queryable only once the split has completed.
  ncclCommUserRank(sub, &c->rank_);
  ncclCommCount(sub, &c->size_);
  return c;
}

}  // namespace ravensp::comm
