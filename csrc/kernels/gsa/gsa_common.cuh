// Device helpers shared by the GSA CUDA kernels: element conversion, the chunk
// map (flat chunk index -> sequence and token range), tile loads into shared
// memory, the per-column cumulative decay of a chunk, and the launch check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "ravensp/check.h"

namespace ravensp::kernels::gsa_cuda {

constexpr int kChunk = 64;    // tokens per chunk (the only chunk size of the CUDA path)
constexpr int kTile = 64;     // width of a staged K / V / state tile
constexpr int kThreads = 256; // threads of every chunk kernel

#define RAVENSP_CUDA_CHECK(expr)                                                   \
  do {                                                                             \
    cudaError_t err_ = (expr);                                                     \
    RAVENSP_CHECK(err_ == cudaSuccess, #expr, " failed: ", cudaGetErrorString(err_)); \
  } while (0)

#define RAVENSP_LAUNCH_CHECK(name)                                                   \
  do {                                                                               \
    cudaError_t err_ = cudaGetLastError();                                           \
    RAVENSP_CHECK(err_ == cudaSuccess, name, ": kernel launch failed: ",             \
                  cudaGetErrorString(err_));                                         \
  } while (0)

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

// Four (two) consecutive elements as fp32 and back: 16 (8) bytes of fp32, 8 (4)
// of a 16-bit type, the address aligned to that size. For the bandwidth-bound
// passes over per-chunk states, which are stored in the input dtype.
template <typename T> __device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (sizeof(T) == 4) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    const uint2 r = *reinterpret_cast<const uint2*>(p);
    const T* e = reinterpret_cast<const T*>(&r);
    return make_float4(to_f<T>(e[0]), to_f<T>(e[1]), to_f<T>(e[2]), to_f<T>(e[3]));
  }
}
// Eight consecutive elements as fp32: 32 bytes of fp32 or 16 of a 16-bit type,
// the address aligned to 16 bytes.
template <typename T> __device__ __forceinline__ void load8(const T* p, float (&x)[8]) {
  if constexpr (sizeof(T) == 4) {
    const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  } else {
    const uint4 r = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&r);
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = to_f<T>(e[i]);
  }
}
template <typename T> __device__ __forceinline__ void store4(T* p, float4 x) {
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = x;
  } else {
    uint2 r;
    T* e = reinterpret_cast<T*>(&r);
    e[0] = from_f<T>(x.x), e[1] = from_f<T>(x.y), e[2] = from_f<T>(x.z), e[3] = from_f<T>(x.w);
    *reinterpret_cast<uint2*>(p) = r;
  }
}
template <typename T> __device__ __forceinline__ void store2(T* p, float a, float b) {
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
  } else {
    unsigned r;
    T* e = reinterpret_cast<T*>(&r);
    e[0] = from_f<T>(a), e[1] = from_f<T>(b);
    *reinterpret_cast<unsigned*>(p) = r;
  }
}

// dst[r][c] = src[r][c] for a rows x cols fp32 tile in shared memory (rows 16-byte
// aligned) going out to global memory in the dtype of dst, four elements per
// store; cols and the global row stride are multiples of 4. No barrier.
template <typename T>
__device__ __forceinline__ void store_tile(T* dst, int64_t ld, const float* src, int lds,
                                           int rows, int cols) {
  const int quads = cols / 4;
  for (int idx = threadIdx.x; idx < rows * quads; idx += blockDim.x) {
    const int r = idx / quads, c = (idx - r * quads) * 4;
    store4(dst + r * ld + c, *reinterpret_cast<const float4*>(src + r * lds + c));
  }
}

// Padded leading dimensions: +8 elements for 16-bit tensor-core operands,
// +4 for fp32 (WMMA needs multiples of 8 / 4), +1 for fp32 buffers that are
// only read elementwise down a column (no bank conflicts).
template <typename T> __host__ __device__ constexpr int ld_of(int cols) {
  return cols + (sizeof(T) == 2 ? 8 : 4);
}
__host__ __device__ constexpr int ld_ew(int cols) { return cols + 1; }

__host__ __device__ constexpr size_t max_of(size_t a, size_t b) { return a > b ? a : b; }

// Slot slice width of the chunk kernels (M is 32 or a multiple of 64).
__host__ __device__ constexpr int slice_of(int M) { return M < kTile ? M : kTile; }

// Where the chunks of each sequence live: chunks of sequence n are the flat
// indices [seq_chunk_off[n], seq_chunk_off[n+1]).
struct ChunkMap {
  const int64_t* seq_chunk_off;  // [N + 1]
  const int32_t* chunk_seq;      // [NC]
  const int64_t* cu;             // [N + 1] token offsets when packed, else nullptr
  int64_t seqlen;                // T per batch row (unpacked)
};

struct ChunkPos {
  int64_t j;      // flat chunk index
  int64_t tok0;   // flat token index (over B*T) of the chunk's first token
  int64_t first;  // flat index of the sequence's first chunk
  int n, c, nc, L;  // sequence, chunk within it, its chunk count, valid tokens
};

// Unpacked rows all have seqlen tokens, so the position is arithmetic; only
// packed sequences read the map. Every chunk kernel starts here, and the map's
// two dependent loads were two memory round trips before any tile could be
// requested.
__device__ __forceinline__ ChunkPos chunk_pos(const ChunkMap& cm, int64_t j) {
  ChunkPos p;
  p.j = j;
  if (cm.cu == nullptr) {
    const int64_t per = (cm.seqlen + kChunk - 1) / kChunk;
    p.n = static_cast<int>(j / per);
    p.first = static_cast<int64_t>(p.n) * per;
    p.c = static_cast<int>(j - p.first);
    p.nc = static_cast<int>(per);
    p.tok0 = static_cast<int64_t>(p.n) * cm.seqlen + static_cast<int64_t>(p.c) * kChunk;
    const int64_t rem = cm.seqlen - static_cast<int64_t>(p.c) * kChunk;
    p.L = static_cast<int>(rem < kChunk ? rem : kChunk);
    return p;
  }
  p.n = cm.chunk_seq[j];
  p.first = cm.seq_chunk_off[p.n];
  p.c = static_cast<int>(j - p.first);
  p.nc = static_cast<int>(cm.seq_chunk_off[p.n + 1] - p.first);
  const int64_t base = cm.cu ? cm.cu[p.n] : static_cast<int64_t>(p.n) * cm.seqlen;
  const int64_t len = cm.cu ? cm.cu[p.n + 1] - cm.cu[p.n] : cm.seqlen;
  p.tok0 = base + static_cast<int64_t>(p.c) * kChunk;
  const int64_t rem = len - static_cast<int64_t>(p.c) * kChunk;
  p.L = static_cast<int>(rem < kChunk ? rem : kChunk);
  return p;
}

// Loads rows x cols of a row-major global tile (row r at src + r * stride),
// converting to Tdst; rows >= valid are zero. 16-byte loads when the source
// rows are 16-byte aligned and cols is a multiple of the vector width; each
// thread issues up to four of them before storing any, so a tile costs one
// memory round trip rather than one per load (the chunk kernels' time was
// mostly spent waiting on these loads, Nsight Compute source counters), and a
// same-type tile is stored 16 bytes at a time when dst rows allow it.
template <typename Tdst, typename Tsrc>
__device__ __forceinline__ void load_tile(Tdst* dst, int ld, const Tsrc* src, int64_t stride,
                                          int rows, int valid, int cols) {
  constexpr int kVec = 16 / sizeof(Tsrc);
  constexpr int kBatch = 4;
  const bool vec = cols % kVec == 0 && stride % kVec == 0 &&
                   (reinterpret_cast<uintptr_t>(src) & 15) == 0;
  if (vec) {
    constexpr bool same = sizeof(Tdst) == sizeof(Tsrc) && std::is_same<Tdst, Tsrc>::value;
    const bool wide = same && (ld * sizeof(Tdst)) % 16 == 0 &&
                      (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
    const int vpr = cols / kVec, total = rows * vpr, step = blockDim.x;
    for (int base = threadIdx.x; base < total; base += kBatch * step) {
      uint4 raw[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = base + b * step, r = idx / vpr, c = (idx - r * vpr) * kVec;
        raw[b] = make_uint4(0u, 0u, 0u, 0u);
        if (idx < total && r < valid)
          raw[b] = __ldg(reinterpret_cast<const uint4*>(src + r * stride + c));
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = base + b * step, r = idx / vpr, c = (idx - r * vpr) * kVec;
        if (idx >= total) break;
        Tdst* d = dst + r * ld + c;
        if (wide) {
          *reinterpret_cast<uint4*>(d) = raw[b];  // zero bits are 0.0 in every dtype
        } else {
          const Tsrc* e = reinterpret_cast<const Tsrc*>(&raw[b]);
#pragma unroll
          for (int u = 0; u < kVec; ++u) d[u] = from_f<Tdst>(to_f<Tsrc>(e[u]));
        }
      }
    }
    return;
  }
  for (int idx = threadIdx.x; idx < rows * cols; idx += blockDim.x) {
    const int r = idx / cols, c = idx - r * cols;
    const float x = r < valid ? to_f<Tsrc>(src[r * stride + c]) : 0.f;
    dst[r * ld + c] = from_f<Tdst>(x);
  }
}

// dst[r][c] = src[r][c] converted, for a rows x cols tile in shared memory
// (widening a copied 16-bit tile to fp32). No barrier.
template <typename Tdst, typename Tsrc>
__device__ __forceinline__ void convert_tile(Tdst* dst, int ldd, const Tsrc* src, int lds,
                                             int rows, int cols) {
  if (blockDim.x % cols == 0) {  // a thread keeps one column: one division per call
    const int c = threadIdx.x % cols, step = blockDim.x / cols;
    for (int r = threadIdx.x / cols; r < rows; r += step)
      dst[r * ldd + c] = from_f<Tdst>(to_f<Tsrc>(src[r * lds + c]));
    return;
  }
  for (int idx = threadIdx.x; idx < rows * cols; idx += blockDim.x) {
    const int r = idx / cols, c = idx - r * cols;
    dst[r * ldd + c] = from_f<Tdst>(to_f<Tsrc>(src[r * lds + c]));
  }
}

// One cp.async piece: kBytes from `from` to shared address d, or zeros when n
// is 0 (`from` must still be a valid address).
template <int kBytes>
__device__ __forceinline__ void cp_async_piece(unsigned d, const void* from, int n) {
  static_assert(kBytes == 16 || kBytes == 4, "cp.async pieces of 16 or 4 bytes");
  if constexpr (kBytes == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(from), "r"(n)
                 : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(from), "r"(n)
                 : "memory");
}

__device__ __forceinline__ void async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Issues the cp.async copies of a rows x cols tile in kBytes pieces (16: .cg,
// past L1; 4: .ca, for destinations of any leading dimension) and commits them
// as one group. A row past the valid ones copies 0 bytes from the tile's first
// row (a valid address) and zero-fills its piece.
template <int kBytes, typename T>
__device__ __forceinline__ void async_rows(T* dst, int ld, const T* src, int64_t stride, int rows,
                                           int valid, int cols) {
  constexpr int kVec = kBytes / sizeof(T);
  const int vpr = cols / kVec;
  auto issue = [](unsigned d, const T* from, int n) { cp_async_piece<kBytes>(d, from, n); };
  if (blockDim.x % vpr == 0 && rows * stride < (int64_t{1} << 31)) {
    // Every tile here: a thread keeps one piece column and walks the rows by a
    // 32-bit source offset and a shared address (Nsight Compute: a division and
    // 64-bit address arithmetic per piece were most of the copy instructions).
    const int c = (threadIdx.x % vpr) * kVec, step = blockDim.x / vpr;
    int r = threadIdx.x / vpr;
    int off = static_cast<int>(r * stride) + c;
    unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst + r * ld + c));
    const int s_step = static_cast<int>(step * stride);
    const unsigned d_step = static_cast<unsigned>(step * ld * sizeof(T));
#pragma unroll 1
    for (; r < rows; r += step, off += s_step, d += d_step)
      issue(d, src + (r < valid ? off : 0), r < valid ? kBytes : 0);
  } else {
    for (int idx = threadIdx.x; idx < rows * vpr; idx += blockDim.x) {
      const int r = idx / vpr, c = (idx - r * vpr) * kVec;
      issue(static_cast<unsigned>(__cvta_generic_to_shared(dst + r * ld + c)),
            r < valid ? src + r * stride + c : src, r < valid ? kBytes : 0);
    }
  }
  async_commit();
}

// Starts the copy of a same-dtype tile into shared memory without waiting for it
// (cp.async, 16 bytes per copy, zero-filled rows >= valid) and without holding
// it in registers, so several tiles, or a tile and the block's other work, are
// in flight at once; async_wait() then makes them visible to the block. A tile
// that is not 16-byte aligned on both sides is loaded by load_tile on the spot.
template <typename T>
__device__ __forceinline__ void async_tile(T* dst, int ld, const T* src, int64_t stride,
                                           int rows, int valid, int cols) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vec = cols % kVec == 0 && stride % kVec == 0 && (ld * sizeof(T)) % 16 == 0 &&
                   (reinterpret_cast<uintptr_t>(src) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
  if (!vec) {
    load_tile(dst, ld, src, stride, rows, valid, cols);
    async_commit();  // an empty group: every call commits exactly one (async_wait_older)
    return;
  }
  async_rows<16>(dst, ld, src, stride, rows, valid, cols);
}

// Starts the copy of a rows x cols fp32 tile into a shared buffer of any
// leading dimension, zero-filling rows >= valid: 16 bytes per cp.async when
// both sides allow it (rows of a multiple of 4 floats, as ld_of gives), else
// 4 bytes (the odd, conflict-free rows of ld_ew). For the slot-slice tiles (p,
// du, dgca) that a block needs together: issued at once they cost one memory
// round trip, loaded one after another they cost one each.
__device__ __forceinline__ void async_floats(float* dst, int ld, const float* src, int64_t stride,
                                             int rows, int valid, int cols) {
  const bool vec = (ld | cols | stride) % 4 == 0 && (reinterpret_cast<uintptr_t>(src) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
  if (vec) async_rows<16>(dst, ld, src, stride, rows, valid, cols);
  else async_rows<4>(dst, ld, src, stride, rows, valid, cols);
}

// Writes a kChunk x kChunk fp32 matrix from shared memory (leading dim ld, a
// multiple of 4) to contiguous global rows of T, four elements at a time. No
// barrier.
template <typename T>
__device__ __forceinline__ void store_square(T* dst, const float* src, int ld) {
  constexpr int kQuads = kChunk / 4;
  for (int idx = threadIdx.x; idx < kChunk * kQuads; idx += blockDim.x) {
    const int r = idx / kQuads, c = (idx - r * kQuads) * 4;
    const float4 x = *reinterpret_cast<const float4*>(src + r * ld + c);
    if constexpr (std::is_same<T, float>::value) {
      *reinterpret_cast<float4*>(dst + r * kChunk + c) = x;
    } else {
      struct alignas(8) Quad { T e[4]; } y;
      y.e[0] = from_f<T>(x.x);
      y.e[1] = from_f<T>(x.y);
      y.e[2] = from_f<T>(x.z);
      y.e[3] = from_f<T>(x.w);
      *reinterpret_cast<Quad*>(dst + r * kChunk + c) = y;
    }
  }
}

// Waits for this thread's async_tile copies, then for the block.
__device__ __forceinline__ void async_wait() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  __syncthreads();
}

// Waits for all but the kPending most recent async_tile / async_floats calls
// (each commits one group), then for the block: the copies of a prefetch
// stay in flight.
template <int kPending>
__device__ __forceinline__ void async_wait_older() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
  __syncthreads();
}

// Per-column decay of one chunk for slots [m0, m0 + ms): G[t][m] = sum_{j<=t} g_j
// (rows >= L contribute 0), fp32, leading dim ld.
// The scan is one warp per column, two rows per lane and a shuffle scan: with
// one thread per column walking 64 dependent loads and stores (~1.5 us), the
// other warps waited at the barrier, once per slot slice of every chunk kernel.
template <typename T>
__device__ __forceinline__ void chunk_decay(float* G, int ld, const T* g, int64_t stride, int L,
                                            int ms) {
  static_assert(kChunk == 64, "two rows per lane");
  if (blockDim.x % ms == 0) {  // a thread keeps one column: one division per call
    const int m = threadIdx.x % ms, step = blockDim.x / ms;
#pragma unroll 4
    for (int t = threadIdx.x / ms; t < kChunk; t += step)
      G[t * ld + m] = t < L ? to_f<T>(g[t * stride + m]) : 0.f;
  } else {
#pragma unroll 4
    for (int idx = threadIdx.x; idx < kChunk * ms; idx += blockDim.x) {
      const int t = idx / ms, m = idx - t * ms;
      G[t * ld + m] = t < L ? to_f<T>(g[t * stride + m]) : 0.f;
    }
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  for (int m = threadIdx.x >> 5; m < ms; m += blockDim.x >> 5) {
    float lo = G[lane * ld + m], hi = G[(lane + 32) * ld + m];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float a = __shfl_up_sync(0xffffffffu, lo, o), b = __shfl_up_sync(0xffffffffu, hi, o);
      if (lane >= o) {
        lo += a;
        hi += b;
      }
    }
    G[lane * ld + m] = lo;
    G[(lane + 32) * ld + m] = hi + __shfl_sync(0xffffffffu, lo, 31);
  }
  __syncthreads();
}

// warp_softmax for rows of at most 32 kN slots.
template <int kN>
__device__ __forceinline__ void warp_softmax_regs(const float* u, float* p, int M, float* lse) {
  const int lane = threadIdx.x & 31;
  float x[kN];
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kN; ++j) {
    x[j] = lane + 32 * j < M ? u[lane + 32 * j] : -INFINITY;
    mx = fmaxf(mx, x[j]);
  }
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kN; ++j) {
    x[j] = __expf(x[j] - mx);  // 0 past M
    sum += x[j];
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float inv = 1.f / sum;
#pragma unroll
  for (int j = 0; j < kN; ++j)
    if (lane + 32 * j < M) p[lane + 32 * j] = x[j] * inv;
  if (lse != nullptr && lane == 0) *lse = mx + logf(sum);
}

// Slot softmax of one row of M scores by one warp: p[m] = softmax(u)[m] (p may
// be u). lse, when not null, gets log sum_m exp(u_m) (lane 0 writes it). Up to
// 256 slots the row is read once and each exp taken once, the values held in
// registers (three passes over u and two exps per slot were a seventh of pass
// 1's instructions at M = 64).
__device__ __forceinline__ void warp_softmax(const float* u, float* p, int M,
                                             float* lse = nullptr) {
  if (M <= 32) return warp_softmax_regs<1>(u, p, M, lse);
  if (M <= 64) return warp_softmax_regs<2>(u, p, M, lse);
  if (M <= 128) return warp_softmax_regs<4>(u, p, M, lse);
  if (M <= 256) return warp_softmax_regs<8>(u, p, M, lse);
  const int lane = threadIdx.x & 31;
  float mx = -INFINITY;
  for (int m = lane; m < M; m += 32) mx = fmaxf(mx, u[m]);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.f;
  for (int m = lane; m < M; m += 32) sum += __expf(u[m] - mx);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float inv = 1.f / sum;
  for (int m = lane; m < M; m += 32) p[m] = __expf(u[m] - mx) * inv;
  if (lse != nullptr && lane == 0) *lse = mx + logf(sum);
}

// Slot softmax of the first L rows of U [kChunk][ldu] (fp32 scores, M slots),
// one warp per row, into p (row t at p + t * stride) and, when lse is not
// null, each row's log-sum-exp into lse[t * lse_stride].
__device__ __forceinline__ void softmax_rows(const float* U, int ldu, int L, int M, float* p,
                                             int64_t stride, float* lse = nullptr,
                                             int64_t lse_stride = 0) {
  for (int t = threadIdx.x >> 5; t < L; t += blockDim.x / 32)
    warp_softmax(U + t * ldu, p + t * stride, M, lse == nullptr ? nullptr : lse + t * lse_stride);
}

}  // namespace ravensp::kernels::gsa_cuda
