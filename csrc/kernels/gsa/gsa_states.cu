// Inter-chunk state machinery of the CUDA GSA path: the chunk map, the per-chunk local states (parallel over chunks, tensor cores)
// and the sequential scan over chunks that turns them into chunk-start states
// (forward) or carries the state gradients back (reverse).
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_plan.h"
#include "kernels/gsa/gsa_launch.cuh"

namespace ravensp::kernels {
namespace gsa_cuda {
namespace {

// One block: the chunk offsets of the sequences (serial over N, the document
// count), then each chunk finds its sequence by binary search in parallel (a
// serial fill by sequence took 21 us for one sequence of 512 chunks).
__global__ void chunk_map_kernel(const int64_t* cu, int64_t N, int64_t T, int64_t* off,
                                 int32_t* chunk_seq) {
  __shared__ int64_t total;
  if (threadIdx.x == 0) {
    int64_t acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      off[n] = acc;
      const int64_t len = cu ? cu[n + 1] - cu[n] : T;
      acc += (len + kChunk - 1) / kChunk;
    }
    off[N] = acc;
    total = acc;
  }
  __syncthreads();
  const int64_t NC = total;
  for (int64_t j = threadIdx.x; j < NC; j += blockDim.x) {
    int64_t lo = 0, hi = N;  // first n in [0, N] with off[n] > j, minus one
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (__ldcg(off + mid) > j) hi = mid;
      else lo = mid + 1;
    }
    chunk_seq[j] = static_cast<int32_t>(lo - 1);
  }
}

// Floats before W in local_states' shared memory: the chunk decay G, which
// becomes the fp32 staging of each product tile once W is formed.
__host__ __device__ constexpr int local_states_g_floats(int MS) {
  return static_cast<int>(max_of(kChunk * ld_ew(MS) + 32, kChunk * ld_of<float>(kTile)));
}

// grid (NC, H, M / MS): the local states of one chunk in one slot slice, from
// W = s * exp(G_L - G): one 64-row tile of Hk (K/64 of them) or 64-column tile
// of Hv (V/64) after another. The slice's s and g tiles arrive by cp.async with
// the first k tile (s into W, which is formed in place, g into the second tile
// buffer), one memory round trip: read from global memory one row per
// iteration, they were a chain of dependent loads as long as the kernel's
// products (the grid is about one wave, so a block's latency is the kernel's
// time). The next k or v tile is in flight (cp.async into the other of two
// tile buffers, no registers held) while the block multiplies the current one.
// A product lands in shared memory (fp32, where G was) and goes out in the
// input dtype, 8 bytes per thread and store.
// One slice per block (45 KB, 64 registers: four blocks per SM at any M): at
// M = 256 a block that walked the four slices held W for all of them (68 KB,
// three per SM) and built their decays one after another.
template <typename T>
__global__ void __launch_bounds__(kThreads, 4) local_states_kernel(
    ChunkMap cm, int H, int K, int V, int M, const T* __restrict__ k, const T* __restrict__ v,
    const T* __restrict__ s, const T* __restrict__ g, T* hk, T* hv, float* gl) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y;
  const int MS = slice_of(M), m0 = blockIdx.z * MS, ldg = ld_ew(MS), ldw = ld_of<T>(MS),
            ldx = ld_of<T>(kTile), lds = ld_of<float>(kTile);
  float* G = reinterpret_cast<float*>(smem_raw);
  float* Stage = G;  // once W is formed
  T* W = reinterpret_cast<T*>(G + local_states_g_floats(MS));
  T* const X0 = W + kChunk * ldw + 64;  // two tile buffers, X0 and X0 + kChunk * ldx
  auto X = [&](int z) { return X0 + (z & 1) * kChunk * ldx; };
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;
  const int nk = K / kTile, nz = nk + V / kTile;
  auto tile_src = [&](int z) {
    return z < nk ? k + (cp.tok0 * H + h) * K + z * kTile : v + (cp.tok0 * H + h) * V + (z - nk) * kTile;
  };
  const int64_t rowX[2] = {static_cast<int64_t>(H) * K, static_cast<int64_t>(H) * V};
  async_tile(X(0), ldx, tile_src(0), rowX[0], kChunk, cp.L, kTile);
  async_tile(W, ldw, s + tokM + m0, rowM, kChunk, cp.L, MS);
  async_tile(X(1), ldx, g + tokM + m0, rowM, kChunk, cp.L, MS);
  async_wait();
  const int64_t unit = cp.j * H + h;
  chunk_decay<T>(G, ldg, X(1), ldx, cp.L, MS);
  for (int idx = threadIdx.x; idx < kChunk * MS; idx += blockDim.x) {
    const int t = idx / MS, m = idx - t * MS;  // rows >= L of s arrived as zeros
    W[t * ldw + m] = from_f<T>(to_f<T>(W[t * ldw + m]) *
                               __expf(G[(kChunk - 1) * ldg + m] - G[t * ldg + m]));
  }
  for (int m = threadIdx.x; m < MS; m += blockDim.x)
    gl[unit * M + m0 + m] = G[(kChunk - 1) * ldg + m];
  for (int z = 0; z < nz; ++z) {
    // Tile z has landed, W is complete (G is free), and every warp is done with
    // tile z - 1's buffer (or g's, at z = 0) and the staging.
    async_wait();
    if (z + 1 < nz)
      async_tile(X(z + 1), ldx, tile_src(z + 1), rowX[z + 1 >= nk], kChunk, cp.L, kTile);
    const T* Xz = X(z);
    if (z < nk) block_mma<true, false>(Stage, lds, Xz, ldx, W, ldw, kTile, MS, kChunk, false);
    else block_mma<true, false>(Stage, lds, W, ldw, Xz, ldx, MS, kTile, kChunk, false);
    __syncthreads();
    if (z < nk)
      store_tile(hk + unit * K * M + static_cast<int64_t>(z) * kTile * M + m0, M, Stage, lds,
                 kTile, MS);
    else
      store_tile(hv + unit * M * V + static_cast<int64_t>(m0) * V + (z - nk) * kTile, V, Stage,
                 lds, MS, kTile);
  }
}

__device__ __forceinline__ float4 fma4(float4 a, float4 d, float4 b) {
  return make_float4(fmaf(a.x, __expf(d.x), b.x), fmaf(a.y, __expf(d.y), b.y),
                     fmaf(a.z, __expf(d.z), b.z), fmaf(a.w, __expf(d.w), b.w));
}

// grid (N*H, ceil((K*M + M*V) / 1024)): one thread per four consecutive state
// elements (four slots of a key-state row, or four columns of one value-state
// slot) walks the sequence's chunks; buf[j] (input dtype) receives the running
// value (fp32 in registers) before chunk j. Four-element accesses (16 bytes in
// fp32, 8 in 16-bit) keep a warp's reads of one chunk in one run (the
// one-element version reached ~1.1 TB/s).
template <typename T>
__global__ void __launch_bounds__(kThreads) combine_kernel(
    const int64_t* __restrict__ off, int H, int K, int V, int M, bool reverse, T* bk,
    T* bv, const float* __restrict__ gl, const float* __restrict__ init_k,
    const float* __restrict__ init_v, float* out_k, float* out_v, float* gcum) {
  const int64_t nh = blockIdx.x, KM = static_cast<int64_t>(K) * M, MV = static_cast<int64_t>(M) * V;
  const int64_t e = 4 * (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x);
  if (e >= KM + MV) return;
  const int64_t n = nh / H, h = nh % H;
  const bool is_k = e < KM;
  const int64_t el = is_k ? e : e - KM, size = is_k ? KM : MV;
  const int m = static_cast<int>(is_k ? el % M : el / V);  // first of the four slots (key)
  T* buf = is_k ? bk : bv;
  const float* init = is_k ? init_k : init_v;
  float* out = is_k ? out_k : out_v;
  const int64_t stride = H * size, eoff = h * size + el;
  const int64_t first = off[n], nc = off[n + 1] - first;
  float4 run = init ? *reinterpret_cast<const float4*>(init + nh * size + el)
                    : make_float4(0.f, 0.f, 0.f, 0.f);
  auto decay = [&](int64_t j) {
    const float* d = gl + (j * H + h) * M + m;
    return is_k ? *reinterpret_cast<const float4*>(d) : make_float4(*d, *d, *d, *d);
  };
  // The threads holding key-state row 0 also carry the log decay the scan has
  // applied so far: gcum[j] = sum of gl over the chunks before j in scan order.
  float* gout = gcum != nullptr && is_k && el < M ? gcum : nullptr;
  float4 lrun = make_float4(0.f, 0.f, 0.f, 0.f);
  auto chunk = [&](int64_t step) { return first + (reverse ? nc - 1 - step : step); };
  // Groups of 8 chunks: the loads are issued before the group's stores, so each
  // thread keeps 8 x 16 bytes of DRAM requests in flight.
  constexpr int kGroup = 8;
  int64_t step = 0;
  for (; step + kGroup <= nc; step += kGroup) {
    float4 loc[kGroup], dec[kGroup];
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      const int64_t j = chunk(step + u);
      loc[u] = load4(buf + j * stride + eoff);
      dec[u] = decay(j);
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      store4(buf + chunk(step + u) * stride + eoff, run);
      run = fma4(run, dec[u], loc[u]);
    }
    if (gout != nullptr)
      for (int u = 0; u < kGroup; ++u) {
        *reinterpret_cast<float4*>(gout + (chunk(step + u) * H + h) * M + m) = lrun;
        lrun = make_float4(lrun.x + dec[u].x, lrun.y + dec[u].y, lrun.z + dec[u].z,
                           lrun.w + dec[u].w);
      }
  }
  for (; step < nc; ++step) {
    const int64_t j = chunk(step);
    const float4 loc = load4(buf + j * stride + eoff), dec = decay(j);
    store4(buf + j * stride + eoff, run);
    run = fma4(run, dec, loc);
    if (gout != nullptr) {
      *reinterpret_cast<float4*>(gout + (j * H + h) * M + m) = lrun;
      lrun = make_float4(lrun.x + dec.x, lrun.y + dec.y, lrun.z + dec.z, lrun.w + dec.w);
    }
  }
  if (out) *reinterpret_cast<float4*>(out + nh * size + el) = run;
}

template <typename T>
void local_states_typed(const Plan& p, const void* k, const void* v, const void* s, const void* g,
                        cudaStream_t stream) {
  const int MS = slice_of(static_cast<int>(p.M));
  const size_t smem = local_states_g_floats(MS) * sizeof(float) +
                      (kChunk * ld_of<T>(MS) + 64 + 2 * kChunk * ld_of<T>(kTile)) * sizeof(T);
  set_smem(local_states_kernel<T>, smem, "gsa local_states");
  local_states_kernel<T><<<dim3(p.NC, p.H, p.M / MS), kThreads, smem, stream>>>(
      chunk_map(p), p.H, p.K, p.V, p.M, static_cast<const T*>(k), static_cast<const T*>(v),
      static_cast<const T*>(s), static_cast<const T*>(g), static_cast<T*>(p.hk),
      static_cast<T*>(p.hv), p.gl);
  RAVENSP_LAUNCH_CHECK("gsa local_states_kernel");
}

}  // namespace

Plan make_plan(const GsaShape& sh, DType dtype) {
  Plan p;
  p.N = sh.num_seqs;
  p.H = sh.heads;
  p.K = sh.head_k;
  p.V = sh.head_v;
  p.M = sh.slots;
  p.tokens = sh.batch * sh.seqlen;
  p.seqlen = sh.seqlen;
  p.dtype = dtype;
  p.cu = sh.cu_seqlens;
  if (sh.cu_seqlens_host != nullptr) {
    for (int64_t n = 0; n < p.N; ++n)
      p.NC += (sh.cu_seqlens_host[n + 1] - sh.cu_seqlens_host[n] + kChunk - 1) / kChunk;
  } else {
    p.NC = p.N * ((sh.seqlen + kChunk - 1) / kChunk);
  }
  return p;
}

void carve_map(Plan& p, Carver& c) {
  p.seq_chunk_off = c.take<int64_t>(p.N + 1);
  p.chunk_seq = c.take<int32_t>(p.NC);
}

void carve_states(Plan& p, Carver& c) {
  p.hk = c.take_raw(p.NC * p.H * p.K * p.M, state_bytes(p.dtype));
  p.hv = c.take_raw(p.NC * p.H * p.M * p.V, state_bytes(p.dtype));
  p.gl = c.take<float>(p.NC * p.H * p.M);
}

void carve_saved(Plan& p, Carver& c, float** fin_k, float** fin_v) {
  carve_states(p, c);
  *fin_k = c.take<float>(p.N * p.H * p.K * p.M);
  *fin_v = c.take<float>(p.N * p.H * p.M * p.V);
  p.a2 = c.take_raw(p.NC * p.H * kChunk * kChunk, state_bytes(p.dtype));
}

void carve_plan(Plan& p, Carver& ws, void* kept, float** fin_k, float** fin_v) {
  carve_map(p, ws);
  if (kept == nullptr) {
    carve_states(p, ws);
    return;
  }
  Carver c(kept);
  carve_saved(p, c, fin_k, fin_v);
}

void launch_chunk_map(const Plan& p, cudaStream_t stream) {
  chunk_map_kernel<<<1, 1024, 0, stream>>>(p.cu, p.N, p.seqlen, p.seq_chunk_off, p.chunk_seq);
  RAVENSP_LAUNCH_CHECK("gsa chunk_map_kernel");
}

void launch_local_states(const Plan& p, const void* k, const void* v, const void* s,
                         const void* g, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::kBFloat16: return local_states_typed<__nv_bfloat16>(p, k, v, s, g, stream);
    case DType::kFloat16: return local_states_typed<__half>(p, k, v, s, g, stream);
    default: return local_states_typed<float>(p, k, v, s, g, stream);
  }
}

void launch_combine(const Plan& p, bool reverse, void* bk, void* bv, const float* init_k,
                    const float* init_v, float* out_k, float* out_v, cudaStream_t stream,
                    float* gcum) {
  const int64_t E = p.K * p.M + p.M * p.V;
  RAVENSP_CHECK(p.M % 4 == 0 && p.V % 4 == 0, "gsa combine: M and V must be multiples of 4, got M=",
                p.M, " V=", p.V);
  dim3 grid(p.N * p.H, (E / 4 + kThreads - 1) / kThreads);
  auto launch = [&](auto* typed) {
    using T = std::remove_pointer_t<decltype(typed)>;
    combine_kernel<T><<<grid, kThreads, 0, stream>>>(
        p.seq_chunk_off, p.H, p.K, p.V, p.M, reverse, static_cast<T*>(bk), static_cast<T*>(bv),
        p.gl, init_k, init_v, out_k, out_v, gcum);
  };
  with_dtype(p.dtype, launch);
  RAVENSP_LAUNCH_CHECK("gsa combine_kernel");
}

}  // namespace gsa_cuda

}  // namespace ravensp::kernels
