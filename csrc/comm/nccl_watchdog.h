// The NCCL backend's watchdog: NCCL calls return once work is enqueued, so a
// stuck peer shows only as a device event that never completes. A thread polls
// each operation's completion event and the communicator's async error; past the
// deadline it records which operation hung and aborts the communicator
// (ncclCommAbort), which makes the stuck kernels exit.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ravensp::comm {

class NcclWatchdog {
 public:
  // `abort` runs (once, on the watchdog thread) with the failure message.
  NcclWatchdog(ncclComm_t comm, int device, double timeout_s, std::function<void(const std::string&)> abort);
  ~NcclWatchdog();

  // Takes ownership of `done` (recorded after the operation on the comm stream).
  void track(cudaEvent_t done, const std::string& op);
  // Waits until every tracked operation completed; returns "" or the failure.
  std::string drain(double timeout_s);
  std::string error();  // "" while healthy
  void set_timeout(double s);

 private:
  struct Item {
    cudaEvent_t done;
    std::string op;
    std::chrono::steady_clock::time_point start;
  };
  void loop();

  ncclComm_t comm_;
  int device_;
  double timeout_s_;
  std::function<void(const std::string&)> abort_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Item> items_;
  std::string error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ravensp::comm
