// The NCCL watchdog; see nccl_watchdog.h.
#include "comm/nccl_watchdog.h"

#include <sstream>

#include "ravensp/comm.h"

namespace ravensp::comm {

NcclWatchdog::NcclWatchdog(ncclComm_t comm, int device, double timeout_s,
                           std::function<void(const std::string&)> abort)
    : comm_(comm), device_(device), timeout_s_(timeout_s), abort_(std::move(abort)) {
  thread_ = std::thread([this] { loop(); });
}

NcclWatchdog::~NcclWatchdog() {
  {
    std::lock_guard<std::mutex> g(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (Item& it : items_) cudaEventDestroy(it.done);  // released by CUDA once complete
}

void NcclWatchdog::track(cudaEvent_t done, const std::string& op) {
  std::lock_guard<std::mutex> g(m_);
  items_.push_back(Item{done, op, std::chrono::steady_clock::now()});
  cv_.notify_all();
}

std::string NcclWatchdog::error() {
  std::lock_guard<std::mutex> g(m_);
  return error_;
}

void NcclWatchdog::set_timeout(double s) {
  std::lock_guard<std::mutex> g(m_);
  timeout_s_ = s;
}

std::string NcclWatchdog::drain(double timeout_s) {
  std::unique_lock<std::mutex> g(m_);
  // The watchdog's own deadline ends every operation; the extra second lets it
  // report (and abort) before this wait gives up with a message of its own.
  bool ok = cv_.wait_for(g, std::chrono::duration<double>(timeout_s + 1.0),
                         [this] { return items_.empty() || !error_.empty(); });
  if (!ok && error_.empty()) return "synchronize timed out after " + std::to_string(timeout_s) + " s";
  return error_;
}

void NcclWatchdog::loop() {
  cudaSetDevice(device_);  // event queries act on the communicator's device
  std::unique_lock<std::mutex> g(m_);
  while (!stop_) {
    cv_.wait_for(g, std::chrono::milliseconds(20));
    if (!error_.empty()) continue;
    std::string failure;
    while (!items_.empty()) {
      Item& it = items_.front();
      cudaError_t q = cudaEventQuery(it.done);
      if (q == cudaSuccess) {
        cudaEventDestroy(it.done);
        items_.pop_front();
        continue;
      }
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - it.start).count();
      std::ostringstream os;
      if (q != cudaErrorNotReady) {
        os << it.op << " failed on the device: " << cudaGetErrorString(q);
        failure = os.str();
      } else if (waited > timeout_s_) {
        os << it.op << " did not complete within " << waited << " s (" << kTimeoutEnv << "=" << timeout_s_
           << "): a peer is stuck or dead; communicator aborted";
        failure = os.str();
      }
      break;  // later items were enqueued after this one: they cannot be done first
    }
    ncclResult_t async = ncclSuccess;
    if (failure.empty() && ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      failure = std::string("asynchronous NCCL error: ") + ncclGetErrorString(async) + " (" +
                ncclGetLastError(comm_) + "); communicator aborted";
    }
    if (!failure.empty()) {
      error_ = failure;
      g.unlock();
      abort_(failure);  // outside our lock: abort takes the communicator's
      g.lock();
      cv_.notify_all();
    } else if (items_.empty()) {
      cv_.notify_all();
    }
  }
}

}  // namespace ravensp::comm
