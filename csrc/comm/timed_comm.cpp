// Implementation of the timing decorator (see include/ravensp/timed_comm.h).
#include "ravensp/timed_comm.h"

#include <chrono>

namespace ravensp::comm {

TimedCommunicator::TimedCommunicator(std::shared_ptr<Communicator> inner,
                                     std::shared_ptr<std::atomic<int64_t>> ns)
    : Communicator(inner->name()),
      inner_(std::move(inner)),
      ns_(ns ? std::move(ns) : std::make_shared<std::atomic<int64_t>>(0)) {
  set_timeout(inner_->timeout_s());
}

template <typename F>
void TimedCommunicator::timed(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  struct Add {  // counts the call even when it throws
    std::atomic<int64_t>& ns;
    std::chrono::steady_clock::time_point t0;
    ~Add() {
      ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
                .count();
    }
  } add{*ns_, t0};
  f();
}

void TimedCommunicator::synchronize() {
  timed([&] { inner_->synchronize(); });
}
void TimedCommunicator::all_gather_impl(const Buffer& s, const Buffer& r) {
  timed([&] { inner_->all_gather(s, r); });
}
void TimedCommunicator::all_reduce_impl(const Buffer& s, const Buffer& r, ReduceOp op) {
  timed([&] { inner_->all_reduce(s, r, op); });
}
void TimedCommunicator::broadcast_impl(const Buffer& b, int root) {
  timed([&] { inner_->broadcast(b, root); });
}
void TimedCommunicator::send_recv_impl(const std::vector<P2POp>& ops) {
  timed([&] { inner_->send_recv(ops); });
}
void TimedCommunicator::barrier_impl() {
  timed([&] { inner_->barrier(); });
}
std::unique_ptr<Communicator> TimedCommunicator::split_impl(int color, int key, const std::string& name) {
  auto sub = inner_->split(color, key, name);
  if (!sub) return nullptr;
  return std::make_unique<TimedCommunicator>(std::shared_ptr<Communicator>(std::move(sub)), ns_);
}

}  // namespace ravensp::comm
