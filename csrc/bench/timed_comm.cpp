// TimedComm and the one-rank host communicator (see timed_comm.h).
#include "timed_comm.h"

#include <chrono>

namespace ravensp::bench {

TimedComm::TimedComm(std::shared_ptr<comm::Communicator> inner)
    : comm::Communicator(inner->name() + "+timed"), inner_(std::move(inner)) {}

template <typename F>
void TimedComm::timed(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

void TimedComm::synchronize() {
  timed([&] { inner_->synchronize(); });
}
void TimedComm::all_gather_impl(const comm::Buffer& s, const comm::Buffer& r) {
  timed([&] { inner_->all_gather(s, r); });
}
void TimedComm::all_reduce_impl(const comm::Buffer& s, const comm::Buffer& r, comm::ReduceOp op) {
  timed([&] { inner_->all_reduce(s, r, op); });
}
void TimedComm::broadcast_impl(const comm::Buffer& b, int root) {
  timed([&] { inner_->broadcast(b, root); });
}
void TimedComm::send_recv_impl(const std::vector<comm::P2POp>& ops) {
  timed([&] { inner_->send_recv(ops); });
}
void TimedComm::barrier_impl() {
  timed([&] { inner_->barrier(); });
}
std::unique_ptr<comm::Communicator> TimedComm::split_impl(int color, int key, const std::string& name) {
  return inner_->split(color, key, name);  // sub-groups are not timed: the bench never splits
}

std::shared_ptr<comm::Communicator> single_rank_host() {
  comm::TcpStore store("127.0.0.1", 0, true, 0, comm::timeout_from_env());
  return comm::init_tcp(store, 0, 1, "bench-single");
}

}  // namespace ravensp::bench
