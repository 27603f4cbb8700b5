// The CUDA GSA dispatch table (see gsa_cuda_table.h): head dims K, V in
// {64, 128, 256}, slots M in {32, 64, 128, 256}, bf16 / fp16 / fp32, chunk 64.
#include "kernels/gsa/gsa_cuda_table.h"

#include "ravensp/check.h"

namespace ravensp::kernels {
namespace {

constexpr int64_t kHeadDims[] = {64, 128, 256};
constexpr int64_t kSlots[] = {32, 64, 128, 256};
constexpr int64_t kCudaChunk = 64;

template <size_t N>
bool contains(const int64_t (&table)[N], int64_t x) {
  for (int64_t v : table)
    if (v == x) return true;
  return false;
}

}  // namespace

void gsa_cuda_check_supported(const char* fn, const GsaShape& sh, DType dtype,
                              int64_t chunk_size) {
  RAVENSP_CHECK(dtype != DType::kFloat64, fn, ": dtype float64 is not supported by the CUDA "
                "kernels (supported: bfloat16, float16, float32); run float64 on the CPU ops");
  RAVENSP_CHECK(contains(kHeadDims, sh.head_k), fn, ": K=", sh.head_k,
                " unsupported on CUDA; supported: 64, 128, 256");
  RAVENSP_CHECK(contains(kHeadDims, sh.head_v), fn, ": V=", sh.head_v,
                " unsupported on CUDA; supported: 64, 128, 256");
  RAVENSP_CHECK(contains(kSlots, sh.slots), fn, ": M=", sh.slots,
                " unsupported on CUDA; supported: 32, 64, 128, 256");
  RAVENSP_CHECK(chunk_size == kCudaChunk, fn, ": chunk_size=", chunk_size,
                " unsupported on CUDA; supported: 64");
}

}  // namespace ravensp::kernels
