// Token-by-token GSA forward on CUDA for decoding: pass 1 keeps a 32-slot
// column block of Hk in registers (its columns evolve independently) and writes
// the scores, a row softmax turns them into p, and pass 2 keeps a 32-column
// block of Hv in registers. Each token costs one pass over q, k, v, s, g.
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_cuda.h"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels {
namespace gsa_cuda {
namespace {

constexpr int kCols = 32;                   // state columns per block (one per lane)
constexpr int kWarps = kThreads / 32;       // row groups
constexpr int kMaxRows = 256 / kWarps;      // state rows per thread at K, M = 256

struct SeqRange { int64_t bos, eos; };

__device__ __forceinline__ SeqRange seq_range(const int64_t* cu, int64_t n, int64_t T) {
  return cu ? SeqRange{cu[n], cu[n + 1]} : SeqRange{n * T, (n + 1) * T};
}

// grid (N*H, M/32): u[t][m] = scale * q_t^T Hk_t[:, m]; writes the final Hk block.
template <typename T>
__global__ void __launch_bounds__(kThreads) rec_pass1_kernel(
    const int64_t* cu, int64_t seqlen, int H, int K, int M, float scale, const T* __restrict__ q,
    const T* __restrict__ k, const T* __restrict__ s, const T* __restrict__ g,
    const float* __restrict__ hk0, float* __restrict__ u, float* __restrict__ hkT) {
  __shared__ float red[kWarps][kCols];
  const int64_t nh = blockIdx.x, n = nh / H, h = nh % H;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, m = blockIdx.y * kCols + lane;
  const int rows = K / kWarps;
  const int64_t KM = static_cast<int64_t>(K) * M;
  float st[kMaxRows];
#pragma unroll
  for (int r = 0; r < kMaxRows; ++r)
    if (r < rows) st[r] = hk0 ? hk0[nh * KM + static_cast<int64_t>(warp + r * kWarps) * M + m] : 0.f;
  const SeqRange sr = seq_range(cu, n, seqlen);
  for (int64_t t = sr.bos; t < sr.eos; ++t) {
    const int64_t tk = (t * H + h) * K, tm = (t * H + h) * M;
    const float sm = to_f<T>(s[tm + m]), em = __expf(to_f<T>(g[tm + m]));
    float acc = 0.f;
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r)
      if (r < rows) {
        const int kk = warp + r * kWarps;
        st[r] = fmaf(st[r], em, to_f<T>(k[tk + kk]) * sm);
        acc = fmaf(to_f<T>(q[tk + kk]), st[r], acc);
      }
    red[warp][lane] = acc;
    __syncthreads();
    if (warp == 0) {
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += red[w][lane];
      u[tm + m] = scale * sum;
    }
    __syncthreads();
  }
  if (hkT)
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r)
      if (r < rows) hkT[nh * KM + static_cast<int64_t>(warp + r * kWarps) * M + m] = st[r];
}

// One warp per token row: u -> softmax(u) in place.
__global__ void __launch_bounds__(kThreads) rec_softmax_kernel(float* u, int64_t rows, int M) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  warp_softmax(u + row * M, u + row * M, M);
}

// grid (N*H, V/32): o_t[v] = sum_m Hv_t[m][v] p_t[m]; writes the final Hv block.
template <typename T>
__global__ void __launch_bounds__(kThreads) rec_pass2_kernel(
    const int64_t* cu, int64_t seqlen, int H, int M, int V, const T* __restrict__ v,
    const T* __restrict__ s, const T* __restrict__ g, const float* __restrict__ p,
    const float* __restrict__ hv0, T* __restrict__ o, float* __restrict__ hvT) {
  __shared__ float red[kWarps][kCols];
  const int64_t nh = blockIdx.x, n = nh / H, h = nh % H;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, c = blockIdx.y * kCols + lane;
  const int rows = M / kWarps;
  const int64_t MV = static_cast<int64_t>(M) * V;
  float st[kMaxRows];
#pragma unroll
  for (int r = 0; r < kMaxRows; ++r)
    if (r < rows) st[r] = hv0 ? hv0[nh * MV + static_cast<int64_t>(warp + r * kWarps) * V + c] : 0.f;
  const SeqRange sr = seq_range(cu, n, seqlen);
  for (int64_t t = sr.bos; t < sr.eos; ++t) {
    const int64_t tm = (t * H + h) * M, tv = (t * H + h) * V;
    const float vc = to_f<T>(v[tv + c]);
    float acc = 0.f;
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r)
      if (r < rows) {
        const int mm = warp + r * kWarps;
        st[r] = fmaf(st[r], __expf(to_f<T>(g[tm + mm])), to_f<T>(s[tm + mm]) * vc);
        acc = fmaf(p[tm + mm], st[r], acc);
      }
    red[warp][lane] = acc;
    __syncthreads();
    if (warp == 0) {
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += red[w][lane];
      o[tv + c] = from_f<T>(sum);
    }
    __syncthreads();
  }
  if (hvT)
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r)
      if (r < rows) hvT[nh * MV + static_cast<int64_t>(warp + r * kWarps) * V + c] = st[r];
}

template <typename T>
void recurrent_typed(const GsaFwdParams& P, float* u, cudaStream_t stream) {
  const GsaShape& sh = P.shape;
  const int H = static_cast<int>(sh.heads), K = static_cast<int>(sh.head_k),
            V = static_cast<int>(sh.head_v), M = static_cast<int>(sh.slots);
  const int64_t NH = sh.num_seqs * sh.heads, rows = sh.batch * sh.seqlen * sh.heads;
  rec_pass1_kernel<T><<<dim3(NH, M / kCols), kThreads, 0, stream>>>(
      sh.cu_seqlens, sh.seqlen, H, K, M, static_cast<float>(P.scale), static_cast<const T*>(P.q),
      static_cast<const T*>(P.k), static_cast<const T*>(P.s), static_cast<const T*>(P.g),
      static_cast<const float*>(P.hk0), u, static_cast<float*>(P.hkT));
  RAVENSP_LAUNCH_CHECK("gsa rec_pass1_kernel");
  rec_softmax_kernel<<<(rows + kWarps - 1) / kWarps, kThreads, 0, stream>>>(u, rows, M);
  RAVENSP_LAUNCH_CHECK("gsa rec_softmax_kernel");
  rec_pass2_kernel<T><<<dim3(NH, V / kCols), kThreads, 0, stream>>>(
      sh.cu_seqlens, sh.seqlen, H, M, V, static_cast<const T*>(P.v), static_cast<const T*>(P.s),
      static_cast<const T*>(P.g), u, static_cast<const float*>(P.hv0), static_cast<T*>(P.o),
      static_cast<float*>(P.hvT));
  RAVENSP_LAUNCH_CHECK("gsa rec_pass2_kernel");
}

}  // namespace
}  // namespace gsa_cuda

size_t gsa_recurrent_fwd_workspace_bytes(const GsaFwdParams& P) {
  gsa_cuda::Carver c(nullptr);
  c.take<float>(P.shape.batch * P.shape.seqlen * P.shape.heads * P.shape.slots);
  return c.bytes();
}

void gsa_recurrent_fwd_cuda(const GsaFwdParams& P, void* workspace, cudaStream_t stream) {
  gsa_cuda_check_supported("gsa_recurrent_fwd", P.shape, P.dtype, gsa_cuda::kChunk);
  RAVENSP_CHECK(P.accum_dtype == DType::kFloat32, "gsa_recurrent_fwd: CUDA accumulates in "
                "float32, got accum dtype ", dtype_name(P.accum_dtype));
  RAVENSP_CHECK(P.o != nullptr, "gsa_recurrent_fwd: output o is null");
  gsa_cuda::Carver c(workspace);
  float* u = c.take<float>(P.shape.batch * P.shape.seqlen * P.shape.heads * P.shape.slots);
  switch (P.dtype) {
    case DType::kBFloat16: return gsa_cuda::recurrent_typed<__nv_bfloat16>(P, u, stream);
    case DType::kFloat16: return gsa_cuda::recurrent_typed<__half>(P, u, stream);
    default: return gsa_cuda::recurrent_typed<float>(P, u, stream);
  }
}

}  // namespace ravensp::kernels
