// Host-side launch helpers of the GSA CUDA kernels: the chunk map view of a plan,
// the dynamic shared-memory opt-in, checked against the device's limit, and the
// dispatch on the input dtype.
#pragma once

#include <map>
#include <mutex>
#include <utility>

#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels::gsa_cuda {

inline ChunkMap chunk_map(const Plan& p) {
  return ChunkMap{p.seq_chunk_off, p.chunk_seq, p.cu, p.seqlen};
}

// Opts the kernel in to at least `bytes` of dynamic shared memory on the current
// device. The opt-in persists, so the driver is asked only when a launch needs
// more than the kernel already has there: the three driver calls cost several
// microseconds of host time, and a fwd+bwd launches a dozen kernels.
template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes, const char* name) {
  int dev = 0;
  RAVENSP_CUDA_CHECK(cudaGetDevice(&dev));
  const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), dev);
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, size_t> granted;
  std::lock_guard<std::mutex> lock(mu);
  auto it = granted.find(key);
  if (it != granted.end() && it->second >= bytes) return;
  int max_optin = 0;
  RAVENSP_CUDA_CHECK(
      cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  RAVENSP_CHECK(bytes <= static_cast<size_t>(max_optin), name, ": needs ", bytes,
                " bytes of shared memory per block, the device allows ", max_optin);
  RAVENSP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
  granted[key] = bytes;
}

// f(static_cast<T*>(nullptr)) with T the element type of dtype: generic lambdas
// take the type from the pointer (std::remove_pointer_t<decltype(ptr)>).
template <typename F>
void with_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kBFloat16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
    case DType::kFloat16: f(static_cast<__half*>(nullptr)); break;
    default: f(static_cast<float*>(nullptr)); break;
  }
}

}  // namespace ravensp::kernels::gsa_cuda
