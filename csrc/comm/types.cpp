// Names and sizes of the comm room's small value types (DType, Device, ReduceOp,
// Backend) and the one reader of RAVENSP_COMM_TIMEOUT_S.
#include <cerrno>
#include <cstdlib>

#include "ravensp/comm.h"

namespace ravensp::comm {

size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::kInt8:
    case DType::kUInt8: return 1;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kInt32:
    case DType::kFloat32: return 4;
    case DType::kInt64:
    case DType::kFloat64: return 8;
  }
  RAVENSP_CHECK(false, "dtype_size: unknown dtype value ", static_cast<int>(dt));
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kFloat16: return "fp16";
    case DType::kBFloat16: return "bf16";
    case DType::kFloat32: return "fp32";
    case DType::kFloat64: return "fp64";
  }
  return "unknown-dtype";
}

std::string device_str(const Device& d) {
  if (d.type == DeviceType::kCPU) return "cpu";
  return "cuda:" + std::to_string(d.index);
}

const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::kSum ? "sum" : "max"; }

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::kMpi: return "mpi";
    case Backend::kTcp: return "tcp";
    case Backend::kNccl: return "nccl";
  }
  return "unknown-backend";
}

double timeout_from_env() {
  const char* s = std::getenv(kTimeoutEnv);
  if (s == nullptr || *s == '\0') return kDefaultTimeoutS;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  RAVENSP_CHECK(errno == 0 && end != s && *end == '\0' && v > 0, kTimeoutEnv,
                " must be a positive number of seconds, got '", s, "'");
  return v;
}

}  // namespace ravensp::comm
