// Overlapped point-to-point batches for the ring loop (see ring_exchange.h).
#include "ring_exchange.h"

#include <c10/core/impl/VirtualGuardImpl.h>

#include "ravensp/check.h"

namespace ravensp::sp::ring {

comm::DType comm_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return comm::DType::kFloat32;
    case at::kDouble: return comm::DType::kFloat64;
    case at::kHalf: return comm::DType::kFloat16;
    case at::kBFloat16: return comm::DType::kBFloat16;
    case at::kLong: return comm::DType::kInt64;
    case at::kInt: return comm::DType::kInt32;
    case at::kByte: return comm::DType::kUInt8;
    default: RAVENSP_CHECK(false, "ring attention: no comm dtype for ", c10::toString(t));
  }
}

Exchange::Exchange(comm::Communicator& comm, const at::Device& device)
    : comm_(comm), device_(device) {
  if (device.is_cuda()) {
    c10::impl::VirtualGuardImpl impl(device.type());
    side_ = impl.getStreamFromGlobalPool(device, /*isHighPriority=*/true);
    ready_.emplace(device.type());
    done_.emplace(device.type());
  }
}

Exchange::~Exchange() {
  // An exception unwound past a pending batch: finish it so no buffer is freed
  // under a transfer; its own error (if any) is secondary to the one in flight.
  if (inflight_) try {
      wait();
    } catch (...) {
    }
}

comm::Buffer Exchange::buffer(const at::Tensor& t) const {
  RAVENSP_CHECK(t.is_contiguous(), "ring attention: exchange buffers must be contiguous");
  comm::Device d{t.is_cuda() ? comm::DeviceType::kCUDA : comm::DeviceType::kCPU,
                 t.is_cuda() ? t.get_device() : 0};
  return comm::Buffer{t.data_ptr(), static_cast<size_t>(t.numel()), comm_dtype(t.scalar_type()),
                      d, side_ ? side_->native_handle() : nullptr};
}

void Exchange::send(const at::Tensor& t, int peer) {
  queued_.push_back(comm::send_op(buffer(t), peer));
  keep_queued_.push_back(t);
}

void Exchange::recv(const at::Tensor& t, int peer) {
  queued_.push_back(comm::recv_op(buffer(t), peer));
  keep_queued_.push_back(t);
}

void Exchange::start() {
  RAVENSP_CHECK(!inflight_, "ring attention: a batch is already in flight");
  if (queued_.empty()) return;
  std::vector<comm::P2POp> ops;
  ops.swap(queued_);
  keep_inflight_.swap(keep_queued_);
  keep_queued_.clear();
  inflight_ = true;
  if (side_) {
    c10::impl::VirtualGuardImpl impl(device_.type());
    ready_->record(impl.getStream(device_));  // the blocks to send are written
    ready_->block(*side_);
    comm_.send_recv(ops);  // NCCL enqueues on side_ and returns
    done_->record(*side_);
  } else {
    comm::Communicator* c = &comm_;
    host_ = std::async(std::launch::async, [c, ops = std::move(ops)] { c->send_recv(ops); });
  }
}

void Exchange::wait() {
  if (!inflight_) return;
  inflight_ = false;
  if (side_) {
    c10::impl::VirtualGuardImpl impl(device_.type());
    done_->block(impl.getStream(device_));
  } else {
    host_.get();  // rethrows the transfer's error here, on the caller's thread
  }
  keep_inflight_.clear();
}

}  // namespace ravensp::sp::ring
