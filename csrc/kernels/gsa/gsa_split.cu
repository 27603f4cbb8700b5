// The two kernels only the split phases need (gsa_cuda.h, SplitPhase). The
// split runs the chunk states from a zero initial state, so that their end
// states can be exchanged before the real initial state is known; afterwards
// that state enters in closed form, because every chunk state is linear in it:
//   H_c = H_c(zero start) + exp(gcum_c) (.) H_in      (forward, per slot)
//   dH_c = dH_c(zero end) + exp(gcum_c) (.) dH_end    (backward)
// with gcum_c the log decay the scan applied between its start and chunk c.
// inter_softmax adds the key state's term to the zero-start scores (pass 1)
// and takes the softmax; shift_states applies the relation to the value states
// (forward) or to both state gradients (backward) in place.
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_launch.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels::gsa_cuda {
namespace {

constexpr int kMaxSlots = 256;  // the CUDA table's largest M

template <typename T>
struct InterSmem {
  int MS, ldu, lde, ldx;
  __host__ __device__ explicit InterSmem(int M)
      : MS(slice_of(M)), ldu(ld_of<float>(M)), lde(ld_ew(slice_of(M))), ldx(ld_of<T>(kTile)) {}
  __host__ __device__ size_t bytes() const {
    return static_cast<size_t>(kChunk) * (ldu + lde) * sizeof(float) +
           2 * static_cast<size_t>(kChunk) * ldx * sizeof(T);
  }
};

// grid (NC, H): u_t = u0_t + scale * exp(gcum_c + G_t) (.) (q_t^T Hin), p_t =
// softmax(u_t), in place in p (which holds u0), and its log-sum-exp into lse
// when that is not null. Hin is the incoming key state
// of the chunk's sequence, G the cumulative decay inside the chunk.
template <typename T>
__global__ void __launch_bounds__(kThreads) inter_softmax_kernel(
    ChunkMap cm, int H, int K, int M, float scale, const T* __restrict__ q,
    const T* __restrict__ g, const float* __restrict__ gcum, const float* __restrict__ hk_in,
    float* p, float* __restrict__ lse) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const InterSmem<T> L_(M);
  float* U = reinterpret_cast<float*>(smem_raw);
  float* Gs = U + kChunk * L_.ldu;
  T* Xs = reinterpret_cast<T*>(Gs + kChunk * L_.lde);
  T* Ys = Xs + kChunk * L_.ldx;
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y, MS = L_.MS;
  const int64_t unit = cp.j * H + h;
  const int64_t tokK = (cp.tok0 * H + h) * K, rowK = static_cast<int64_t>(H) * K;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;
  float* lse_rows = lse == nullptr ? nullptr : lse + cp.tok0 * H + h;
  if (hk_in == nullptr) {  // zero incoming state: the scores are complete
    load_tile(U, L_.ldu, p + tokM, rowM, kChunk, cp.L, M);
    __syncthreads();
    softmax_rows(U, L_.ldu, cp.L, M, p + tokM, rowM, lse_rows, H);
    return;
  }
  const float* hin = hk_in + (static_cast<int64_t>(cp.n) * H + h) * K * M;
  for (int m0 = 0; m0 < M; m0 += MS) {
    // q's tile by cp.async while the incoming state's tile is loaded and converted.
    for (int kt = 0; kt < K / kTile; ++kt) {
      async_tile(Xs, L_.ldx, q + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
      load_tile(Ys, L_.ldx, hin + static_cast<int64_t>(kt) * kTile * M + m0,
                static_cast<int64_t>(M), kTile, kTile, MS);
      async_wait();
      block_mma<false, false>(U + m0, L_.ldu, Xs, L_.ldx, Ys, L_.ldx, kChunk, MS, kTile, kt > 0);
      __syncthreads();
    }
    chunk_decay<T>(Gs, L_.lde, g + tokM + m0, rowM, cp.L, MS);
    for (int idx = threadIdx.x; idx < cp.L * MS; idx += blockDim.x) {
      const int t = idx / MS, m = idx - t * MS;
      float* u = U + t * L_.ldu + m0 + m;
      *u = p[tokM + t * rowM + m0 + m] +
           scale * __expf(gcum[unit * M + m0 + m] + Gs[t * L_.lde + m]) * *u;
    }
    __syncthreads();
  }
  softmax_rows(U, L_.ldu, cp.L, M, p + tokM, rowM, lse_rows, H);
}

// grid (NC * H): one block per chunk and head adds exp(gcum[j]) (.) vk[n(j)] to
// the chunk's key state and exp(gcum[j]) (.) vv[n(j)] to its value state, the
// decay indexed by each element's slot; a null vector leaves its state alone.
// The states are in the input dtype, the vectors fp32; the sum is formed in
// fp32 and rounded once. Bandwidth-bound: four elements per access, four
// accesses in flight per thread.
template <typename T>
__global__ void __launch_bounds__(kThreads) shift_states_kernel(
    const int32_t* __restrict__ chunk_seq, int H, int K, int V, int M,
    const float* __restrict__ gcum, const float* __restrict__ vk, const float* __restrict__ vv,
    T* bk, T* bv) {
  __shared__ float decay[kMaxSlots];
  const int64_t unit = blockIdx.x, j = unit / H, h = unit % H, n = chunk_seq[j];
  for (int m = threadIdx.x; m < M; m += blockDim.x) decay[m] = __expf(gcum[unit * M + m]);
  __syncthreads();
  const int64_t KM = static_cast<int64_t>(K) * M, MV = static_cast<int64_t>(M) * V;
  if (vk != nullptr) {  // element (k, m) at k * M + m: a float4 spans slots m..m+3
    T* b = bk + unit * KM;
    const float4* x = reinterpret_cast<const float4*>(vk + (n * H + h) * KM);
#pragma unroll 4
    for (int i = threadIdx.x; i < KM / 4; i += blockDim.x) {
      const int m = (4 * i) % M;
      float4 a = load4(b + 4 * i);
      const float4 y = __ldg(x + i);
      a.x = fmaf(decay[m], y.x, a.x);
      a.y = fmaf(decay[m + 1], y.y, a.y);
      a.z = fmaf(decay[m + 2], y.z, a.z);
      a.w = fmaf(decay[m + 3], y.w, a.w);
      store4(b + 4 * i, a);
    }
  }
  if (vv != nullptr) {  // element (m, v) at m * V + v: a float4 stays in slot m
    T* b = bv + unit * MV;
    const float4* x = reinterpret_cast<const float4*>(vv + (n * H + h) * MV);
#pragma unroll 4
    for (int i = threadIdx.x; i < MV / 4; i += blockDim.x) {
      const float d = decay[(4 * i) / V];
      float4 a = load4(b + 4 * i);
      const float4 y = __ldg(x + i);
      a.x = fmaf(d, y.x, a.x);
      a.y = fmaf(d, y.y, a.y);
      a.z = fmaf(d, y.z, a.z);
      a.w = fmaf(d, y.w, a.w);
      store4(b + 4 * i, a);
    }
  }
}

template <typename T>
void inter_softmax_typed(const Plan& pl, const GsaFwdParams& P, const float* gcum, float* p,
                         cudaStream_t stream) {
  const size_t smem = InterSmem<T>(static_cast<int>(pl.M)).bytes();
  set_smem(inter_softmax_kernel<T>, smem, "gsa inter_softmax_kernel");
  inter_softmax_kernel<T><<<dim3(pl.NC, pl.H), kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.K, pl.M, static_cast<float>(P.scale), static_cast<const T*>(P.q),
      static_cast<const T*>(P.g), gcum, static_cast<const float*>(P.hk0), p,
      static_cast<float*>(P.lse));
  RAVENSP_LAUNCH_CHECK("gsa inter_softmax_kernel");
}

}  // namespace

void launch_inter_softmax(const Plan& pl, const GsaFwdParams& P, const float* gcum, float* p,
                          cudaStream_t stream) {
  switch (pl.dtype) {
    case DType::kBFloat16: return inter_softmax_typed<__nv_bfloat16>(pl, P, gcum, p, stream);
    case DType::kFloat16: return inter_softmax_typed<__half>(pl, P, gcum, p, stream);
    default: return inter_softmax_typed<float>(pl, P, gcum, p, stream);
  }
}

void launch_shift_states(const Plan& pl, const float* gcum, const float* vk, const float* vv,
                         void* bk, void* bv, cudaStream_t stream) {
  if (vk == nullptr && vv == nullptr) return;
  RAVENSP_CHECK(pl.M <= kMaxSlots && pl.M % 4 == 0 && pl.V % 4 == 0,
                "gsa shift_states: needs M <= ", kMaxSlots, " and M, V multiples of 4, got M=",
                pl.M, " V=", pl.V);
  auto launch = [&](auto* typed) {
    using T = std::remove_pointer_t<decltype(typed)>;
    shift_states_kernel<T><<<dim3(pl.NC * pl.H), kThreads, 0, stream>>>(
        pl.chunk_seq, pl.H, pl.K, pl.V, pl.M, gcum, vk, vv, static_cast<T*>(bk),
        static_cast<T*>(bv));
  };
  with_dtype(pl.dtype, launch);
  RAVENSP_LAUNCH_CHECK("gsa shift_states_kernel");
}

}  // namespace ravensp::kernels::gsa_cuda
