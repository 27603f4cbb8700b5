// Communicator's public methods: argument validation shared by every backend,
// done locally before anything is enqueued, then the backend's *_impl hook.
#include <sstream>

#include "ravensp/comm.h"

namespace ravensp::comm {

Communicator::Communicator(std::string name) : name_(std::move(name)), timeout_s_(timeout_from_env()) {}

void Communicator::set_timeout(double seconds) {
  RAVENSP_CHECK(seconds > 0, who(), " set_timeout: seconds must be > 0, got ", seconds);
  timeout_s_ = seconds;
}

std::string Communicator::who() const {
  std::ostringstream os;
  os << "[" << backend_name(backend()) << " '" << name_ << "' rank " << rank() << "/" << size() << "]";
  return os.str();
}

void Communicator::fail(const std::string& msg) {
  if (poisoned_.empty()) poisoned_ = msg;
  throw Error(who() + " " + msg);
}

void Communicator::check_usable() const {
  if (!poisoned_.empty()) {
    throw Error(who() + " communicator is unusable after an earlier failure: " + poisoned_);
  }
}

void Communicator::check_buffer(const Buffer& b, const char* op, const char* arg) const {
  RAVENSP_CHECK(b.data != nullptr || b.count == 0, who(), " ", op, ": ", arg, ".data is null with count ",
                b.count);
  RAVENSP_CHECK(b.device.type == memory(), who(), " ", op, ": ", arg, " is on ", device_str(b.device), " but the ",
                backend_name(backend()), " backend moves ", memory() == DeviceType::kCPU ? "host" : "cuda",
                " memory");
}

void Communicator::all_gather(const Buffer& send, const Buffer& recv) {
  check_usable();
  check_buffer(send, "all_gather", "send");
  check_buffer(recv, "all_gather", "recv");
  RAVENSP_CHECK(send.dtype == recv.dtype, who(), " all_gather: send dtype ", dtype_name(send.dtype),
                " != recv dtype ", dtype_name(recv.dtype));
  RAVENSP_CHECK(recv.count == send.count * static_cast<size_t>(size()), who(),
                " all_gather: recv.count must be size * send.count = ", size(), " * ", send.count, " = ",
                send.count * static_cast<size_t>(size()), ", got ", recv.count);
  all_gather_impl(send, recv);
}

void Communicator::all_reduce(const Buffer& send, const Buffer& recv, ReduceOp op) {
  check_usable();
  check_buffer(send, "all_reduce", "send");
  check_buffer(recv, "all_reduce", "recv");
  RAVENSP_CHECK(send.dtype == recv.dtype, who(), " all_reduce: send dtype ", dtype_name(send.dtype),
                " != recv dtype ", dtype_name(recv.dtype));
  RAVENSP_CHECK(send.count == recv.count, who(), " all_reduce: send.count ", send.count, " != recv.count ",
                recv.count);
  all_reduce_impl(send, recv, op);
}

void Communicator::broadcast(const Buffer& buf, int root) {
  check_usable();
  check_buffer(buf, "broadcast", "buf");
  RAVENSP_CHECK(root >= 0 && root < size(), who(), " broadcast: root must be in [0, ", size(), "), got ", root);
  broadcast_impl(buf, root);
}

void Communicator::send_recv(const std::vector<P2POp>& ops) {
  check_usable();
  for (size_t i = 0; i < ops.size(); ++i) {
    const P2POp& p = ops[i];
    const char* arg = p.kind == P2PKind::kSend ? "send" : "recv";
    check_buffer(p.buf, "send_recv", arg);
    RAVENSP_CHECK(p.peer >= 0 && p.peer < size(), who(), " send_recv: op ", i, " (", arg,
                  ") peer must be in [0, ", size(), "), got ", p.peer);
  }
  if (!ops.empty()) send_recv_impl(ops);
}

void Communicator::barrier() {
  check_usable();
  barrier_impl();
}

std::unique_ptr<Communicator> Communicator::split(int color, int key, const std::string& name) {
  check_usable();
  RAVENSP_CHECK(!name.empty(), who(), " split: the new group needs a name (used in error messages)");
  std::unique_ptr<Communicator> sub = split_impl(color, key, name);
  if (sub) sub->set_timeout(timeout_s_);  // a sub-group keeps its parent's deadline
  return sub;
}

}  // namespace ravensp::comm
