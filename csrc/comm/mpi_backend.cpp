// The MPI host backend; see mpi_backend.h. Every wait polls MPI_Test under the
// deadline; every MPI error code becomes an Error naming the rank, the op and
// (for point-to-point) the peer.
#include "comm/mpi_backend.h"

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "comm/deadline.h"
#include "comm/host_reduce.h"

namespace ravensp::comm {
namespace {

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(buf, len);
}

// With less than MPI_THREAD_MULTIPLE, calls from different threads must not
// overlap: each MPI call (never a whole wait) takes this lock.
class MpiLock {
 public:
  MpiLock() {
    int provided = MPI_THREAD_MULTIPLE;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE) lock_ = std::unique_lock<std::mutex>(mutex());
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  std::unique_lock<std::mutex> lock_;
};

MPI_Datatype mpi_dtype(DType dt) {
  switch (dt) {
    case DType::kInt8: return MPI_INT8_T;
    case DType::kUInt8: return MPI_UINT8_T;
    case DType::kInt32: return MPI_INT32_T;
    case DType::kInt64: return MPI_INT64_T;
    case DType::kFloat16:
    case DType::kBFloat16: return MPI_UINT16_T;  // moved as bits; reduced by our own ops
    case DType::kFloat32: return MPI_FLOAT;
    case DType::kFloat64: return MPI_DOUBLE;
  }
  RAVENSP_CHECK(false, "mpi backend: unknown dtype value ", static_cast<int>(dt));
}

template <DType DT, ReduceOp OP>
void user_reduce(void* in, void* inout, int* len, MPI_Datatype*) {
  host_reduce(inout, in, static_cast<size_t>(*len), DT, OP);
}

MPI_Op mpi_op(DType dt, ReduceOp op) {
  if (dt != DType::kFloat16 && dt != DType::kBFloat16) return op == ReduceOp::kSum ? MPI_SUM : MPI_MAX;
  // MPI has no 16-bit float types: four commutative user ops, made once after init.
  static MPI_Op ops[4];
  static std::once_flag once;
  std::call_once(once, [] {
    MpiLock lock;
    MPI_Op_create(&user_reduce<DType::kFloat16, ReduceOp::kSum>, 1, &ops[0]);
    MPI_Op_create(&user_reduce<DType::kFloat16, ReduceOp::kMax>, 1, &ops[1]);
    MPI_Op_create(&user_reduce<DType::kBFloat16, ReduceOp::kSum>, 1, &ops[2]);
    MPI_Op_create(&user_reduce<DType::kBFloat16, ReduceOp::kMax>, 1, &ops[3]);
  });
  return ops[(dt == DType::kBFloat16 ? 2 : 0) + (op == ReduceOp::kMax ? 1 : 0)];
}

int as_int_count(size_t count, const std::string& op) {
  RAVENSP_CHECK(count <= static_cast<size_t>(INT32_MAX), "mpi backend ", op, ": count ", count,
                " exceeds MPI's int count limit ", INT32_MAX, "; split the buffer");
  return static_cast<int>(count);
}

std::string describe(const Buffer& b) {
  return std::to_string(b.count) + " x " + dtype_name(b.dtype);
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

void ensure_mpi_initialized() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  RAVENSP_CHECK(!finalized, "comm: MPI was already finalized; cannot create an MPI communicator");
  if (initialized) return;
  int provided = 0;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  RAVENSP_CHECK(rc == MPI_SUCCESS, "comm: MPI_Init_thread failed: ", mpi_error_string(rc));
  std::atexit(finalize_at_exit);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::dup(MPI_Comm parent, const std::string& name) {
  ensure_mpi_initialized();
  int prank = -1, psize = 0;
  MPI_Comm dupc = MPI_COMM_NULL;
  MPI_Request req = MPI_REQUEST_NULL;
  {
    MpiLock lock;
    MPI_Comm_rank(parent, &prank);
    MPI_Comm_size(parent, &psize);
    int rc = MPI_Comm_idup(parent, &dupc, &req);
    RAVENSP_CHECK(rc == MPI_SUCCESS, "[mpi '", name, "' rank ", prank, "/", psize,
                  "] MPI_Comm_idup failed: ", mpi_error_string(rc));
  }
  double timeout = timeout_from_env();
  Deadline deadline(timeout);
  Backoff backoff;
  for (int done = 0;;) {
    {
      MpiLock lock;
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    }
    if (done) break;
    RAVENSP_CHECK(!deadline.expired(), "[mpi '", name, "' rank ", prank, "/", psize,
                  "] communicator creation (MPI_Comm_idup) with all ranks timed out after ",
                  deadline.elapsed_s(), " s (", kTimeoutEnv, "=", timeout, ")");
    backoff.pause();
  }
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(dupc, name));
}

MpiCommunicator::MpiCommunicator(MPI_Comm owned, const std::string& name) : Communicator(name), comm_(owned) {
  MpiLock lock;
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // Freeing is deferred by MPI while operations are pending, so this is safe
  // even with abandoned requests; after MPI_Finalize there is nothing to free.
  if (!finalized && comm_ != MPI_COMM_NULL) {
    MpiLock lock;
    MPI_Comm_free(&comm_);
  }
}

void MpiCommunicator::check(int rc, const char* call, const std::string& op) {
  if (rc != MPI_SUCCESS) fail(op + ": " + call + " failed: " + mpi_error_string(rc));
}

void MpiCommunicator::wait(std::vector<Pending>& reqs, const std::string& op) {
  Deadline deadline(timeout_s());
  Backoff backoff;
  size_t left = reqs.size();
  while (left > 0) {
    bool progressed = false;
    for (Pending& p : reqs) {
      if (p.req == MPI_REQUEST_NULL) continue;
      int done = 0;
      MPI_Status st;
      int rc;
      {
        MpiLock lock;
        rc = MPI_Test(&p.req, &done, &st);
      }
      if (rc != MPI_SUCCESS) fail(op + ": " + p.what + " failed: " + mpi_error_string(rc));
      if (done) {
        --left;
        progressed = true;
      }
    }
    if (left == 0) break;
    if (deadline.expired()) {
      std::ostringstream os;
      os << op << " timed out after " << deadline.elapsed_s() << " s (" << kTimeoutEnv << "=" << timeout_s()
         << ") waiting for";
      const char* sep = " ";
      for (Pending& p : reqs) {
        if (p.req == MPI_REQUEST_NULL) continue;
        os << sep << p.what;
        sep = "; ";
        abandoned_.push_back(p.req);
      }
      fail(os.str());
    }
    if (!progressed) backoff.pause();
  }
}

void MpiCommunicator::all_gather_impl(const Buffer& send, const Buffer& recv) {
  std::string op = "all_gather (" + describe(send) + " per rank)";
  int n = as_int_count(send.count, op);
  std::vector<Pending> reqs(1, Pending{MPI_REQUEST_NULL, "all ranks", -1});
  {
    MpiLock lock;
    check(MPI_Iallgather(send.data, n, mpi_dtype(send.dtype), recv.data, n, mpi_dtype(recv.dtype), comm_,
                         &reqs[0].req),
          "MPI_Iallgather", op);
  }
  wait(reqs, op);
}

void MpiCommunicator::all_reduce_impl(const Buffer& send, const Buffer& recv, ReduceOp rop) {
  std::string op = std::string("all_reduce (") + reduce_op_name(rop) + ", " + describe(send) + ")";
  int n = as_int_count(send.count, op);
  const void* src = send.data == recv.data ? MPI_IN_PLACE : send.data;
  std::vector<Pending> reqs(1, Pending{MPI_REQUEST_NULL, "all ranks", -1});
  MPI_Op mop = mpi_op(send.dtype, rop);
  {
    MpiLock lock;
    check(MPI_Iallreduce(src, recv.data, n, mpi_dtype(send.dtype), mop, comm_, &reqs[0].req), "MPI_Iallreduce",
          op);
  }
  wait(reqs, op);
}

void MpiCommunicator::broadcast_impl(const Buffer& buf, int root) {
  std::string op = "broadcast (" + describe(buf) + " from root " + std::to_string(root) + ")";
  int n = as_int_count(buf.count, op);
  std::vector<Pending> reqs(1, Pending{MPI_REQUEST_NULL, "all ranks", -1});
  {
    MpiLock lock;
    check(MPI_Ibcast(buf.data, n, mpi_dtype(buf.dtype), root, comm_, &reqs[0].req), "MPI_Ibcast", op);
  }
  wait(reqs, op);
}

void MpiCommunicator::send_recv_impl(const std::vector<P2POp>& ops) {
  std::string op = "send_recv (" + std::to_string(ops.size()) + " ops)";
  std::vector<Pending> reqs;
  reqs.reserve(ops.size());
  // Receives first, so that matching sends (eager or not) find them posted.
  for (int pass = 0; pass < 2; ++pass) {
    for (const P2POp& p : ops) {
      bool is_recv = p.kind == P2PKind::kRecv;
      if (is_recv != (pass == 0)) continue;
      int n = as_int_count(p.buf.count, op);
      std::string what = std::string(is_recv ? "recv from" : "send to") + " rank " + std::to_string(p.peer) +
                         " (" + describe(p.buf) + ")";
      reqs.push_back(Pending{MPI_REQUEST_NULL, what, p.peer});
      MpiLock lock;
      int rc = is_recv ? MPI_Irecv(p.buf.data, n, mpi_dtype(p.buf.dtype), p.peer, 0, comm_, &reqs.back().req)
                       : MPI_Isend(p.buf.data, n, mpi_dtype(p.buf.dtype), p.peer, 0, comm_, &reqs.back().req);
      if (rc != MPI_SUCCESS) {
        for (Pending& q : reqs)
          if (q.req != MPI_REQUEST_NULL) abandoned_.push_back(q.req);
        fail(op + ": posting " + what + " failed: " + mpi_error_string(rc));
      }
    }
  }
  wait(reqs, op);
}

void MpiCommunicator::barrier_impl() {
  std::vector<Pending> reqs(1, Pending{MPI_REQUEST_NULL, "all ranks", -1});
  {
    MpiLock lock;
    check(MPI_Ibarrier(comm_, &reqs[0].req), "MPI_Ibarrier", "barrier");
  }
  wait(reqs, "barrier");
}

std::unique_ptr<Communicator> MpiCommunicator::split_impl(int color, int key, const std::string& name) {
  // MPI_Comm_split has no nonblocking form: a deadline'd barrier first makes sure
  // every rank has arrived, so the split itself cannot wait on a missing peer.
  std::vector<Pending> reqs(1, Pending{MPI_REQUEST_NULL, "all ranks", -1});
  std::string op = "split (color " + std::to_string(color) + ", key " + std::to_string(key) + ")";
  {
    MpiLock lock;
    check(MPI_Ibarrier(comm_, &reqs[0].req), "MPI_Ibarrier", op);
  }
  wait(reqs, op);
  MPI_Comm sub = MPI_COMM_NULL;
  {
    MpiLock lock;
    check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub), "MPI_Comm_split", op);
  }
  if (sub == MPI_COMM_NULL) return nullptr;
  return std::unique_ptr<Communicator>(new MpiCommunicator(sub, name));
}

}  // namespace ravensp::comm
