// Chunk-start states by one walk over each sequence's chunks, for shapes with
// enough state tiles to fill the GPU.
//
// The two-pass route (local_states, then combine) writes every chunk's local
// state, reads it back, and writes the chunk-start state over it: three passes
// over a buffer of (K + V) * M values per chunk and head, bandwidth-bound at
// M = 256. Here a prep kernel, parallel over chunks, forms W = s e^{G_L - G}
// and the chunk decays G_L; then a block owns one 64-wide tile of Hk or Hv of
// one sequence and head (64 x 64 at M >= 64), keeps it in registers (16-bit
// inputs; shared memory for fp32), and walks the chunks in order: it writes
// the tile as the chunk's start state, decays it by G_L and adds k^T W (or
// W^T v). One state write per chunk and no local states; the tiles of the next
// chunks are copied (cp.async) during the current one. W lives in a
// [tokens, H, M] fp32 buffer that the caller has free at that point (p in the
// forward, dgca in the backward), as T at the start of each row, so the walk
// takes no memory. It needs N * H * tiles blocks to fill the GPU (B1 H4
// K=V=256: M = 256 gives 128, M = 64 only 32), so launch_chunk_states picks it
// by that count.
#include <cstdlib>
#include <cstring>

#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_launch.cuh"
#include "kernels/gsa/gsa_mma_sync.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels::gsa_cuda {
namespace {

// grid (NC, H, M / MS): the chunk's decay for one slot slice, then W = s e^{G_L - G}
// (as T, into the first half of each token row of the fp32 scratch) and G_L into
// gl. Everything the walk needs that does not depend on the state, computed in
// parallel over chunks so the walk's serial steps do only the state update.
template <typename T>
__global__ void __launch_bounds__(kThreads) walk_prep_kernel(
    ChunkMap cm, int H, int M, const T* __restrict__ s, const T* __restrict__ g,
    float* __restrict__ wbuf, float* __restrict__ gl) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y, MS = slice_of(M), m0 = blockIdx.z * MS, lde = ld_ew(MS);
  float* G = reinterpret_cast<float*>(smem_raw);
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;
  chunk_decay<T>(G, lde, g + tokM + m0, rowM, cp.L, MS);
  // Four slots per thread, a fixed column per thread (MS / 4 divides the block):
  // 8- or 16-byte accesses and no index division (s is 8-byte aligned when the
  // slot count is a multiple of 4 and s itself is; wbuf always is).
  const int quads = MS / 4;
  const bool vec = (reinterpret_cast<uintptr_t>(s) & (4 * sizeof(T) - 1)) == 0;
  const int m = (threadIdx.x % quads) * 4;
  const float* GLast = G + (kChunk - 1) * lde + m;
  for (int t = threadIdx.x / quads; t < cp.L; t += blockDim.x / quads) {
    const T* src = s + tokM + t * rowM + m0 + m;
    float4 x = vec ? load4(src) : make_float4(to_f<T>(src[0]), to_f<T>(src[1]),
                                              to_f<T>(src[2]), to_f<T>(src[3]));
    const float* Gt = G + t * lde + m;
    x.x *= __expf(GLast[0] - Gt[0]), x.y *= __expf(GLast[1] - Gt[1]);
    x.z *= __expf(GLast[2] - Gt[2]), x.w *= __expf(GLast[3] - Gt[3]);
    store4(reinterpret_cast<T*>(wbuf + tokM + t * rowM) + m0 + m, x);
  }
  for (int m = threadIdx.x; m < MS; m += blockDim.x)
    gl[(cp.j * H + h) * M + m0 + m] = G[(kChunk - 1) * lde + m];
}

// Width of a walk tile along K or V. Once its copies and stores were cheap in
// instructions the register walk became L2-bound (90% L2 throughput at M = 256
// with 32-wide tiles): every block of a slot slice reads the chunk's W tile, so
// 64-wide tiles read W half as often. A 64 x 64 tile is 16 warps' pieces, so the
// register walk runs kWalkThreads threads, one block per SM (B1 H4 K=V=256
// M=256: 128 blocks).
constexpr int kWalkCols = 64;
constexpr int kWalkThreads = 512;

// Buffer sets of the register walk, the copies issued kWalkStages - 1 steps
// ahead (18 KB a set at M >= 64). Measured against two sets, no faster: the step
// is not waiting on its copies. Kept because shared memory is not what limits
// one block per SM, and a slow copy then has three steps to land.
constexpr int kWalkStages = 4;

// Shared memory of a walk block: the fp32 state tile Hs (the shared-memory walk
// only), then `stages` buffer sets of the chunk decays G_L (fp32), a W tile and
// an X tile.
template <typename T>
struct WalkSmem {
  int MS, ldh, ldw, ldx, stages;
  bool has_hs;
  __host__ __device__ WalkSmem(int M, int stages_, bool has_hs_)
      : MS(slice_of(M)), ldh(ld_of<float>(kTile)), ldw(ld_of<T>(slice_of(M))),
        ldx(ld_of<T>(kWalkCols)), stages(stages_), has_hs(has_hs_) {}
  __host__ __device__ size_t hs_floats() const {
    return has_hs ? static_cast<size_t>(kChunk) * ldh : 0;
  }
  __host__ __device__ size_t bytes() const {
    return (hs_floats() + stages * kTile) * sizeof(float) +
           stages * static_cast<size_t>(kChunk) * (ldw + ldx) * sizeof(T) +
           (has_hs ? 0 : stage_bytes());
  }
  // The register walk's per-warp staging areas of its state stores (after the sets).
  __host__ __device__ static constexpr size_t stage_bytes() {
    return (kWalkThreads / 32) * static_cast<size_t>(kAccStageBytes<T, 2>);
  }
  __device__ T* stage(unsigned char* base, int warp) const {
    return x(base, stages) + warp * (kAccStageBytes<T, 2> / sizeof(T));
  }
  __device__ float* gl(unsigned char* base, int b) const {
    return reinterpret_cast<float*>(base) + hs_floats() + b * kTile;
  }
  __device__ T* w(unsigned char* base, int b) const {
    return reinterpret_cast<T*>(gl(base, stages)) + b * kChunk * ldw;
  }
  __device__ T* x(unsigned char* base, int b) const {
    return w(base, stages) + b * kChunk * ldx;
  }
};

// One walk block's tile, for grid (N * tiles, H): tile t < nkt * nm is Hk rows
// [32 kt, +32) x slots [MS mt, +MS), the rest are Hv slots [MS mt, +MS) x
// columns [32 vt, +32); where it sits in a [.., H, K, M] or [.., H, M, V] state
// (off + row * ld), and the chunks of its sequence. The two walk kernels share
// it and differ only in where they keep the tile.
template <typename T>
struct WalkTile {
  int n, h, MS, m0, ct, rows, cols, nc;
  bool is_k;
  int64_t size, ld, off, first, seq_tok0, seq_len;  // the sequence's tokens
  __device__ __forceinline__ WalkTile(const ChunkMap& cm, int K, int V, int M) {
    constexpr int C = kWalkCols;
    MS = slice_of(M);
    const int nm = M / MS, nkt = K / C, nvt = V / C, tiles = nkt * nm + nm * nvt;
    n = blockIdx.x / tiles;
    const int tile = blockIdx.x - n * tiles;
    h = blockIdx.y;
    is_k = tile < nkt * nm;
    const int r = is_k ? tile : tile - nkt * nm;
    const int mt = is_k ? r % nm : r / nvt;
    ct = is_k ? r / nm : r % nvt;  // the k or v column tile
    m0 = mt * MS;
    rows = is_k ? C : MS;
    cols = is_k ? MS : C;
    size = is_k ? static_cast<int64_t>(K) * M : static_cast<int64_t>(M) * V;
    ld = is_k ? M : V;
    off = is_k ? static_cast<int64_t>(ct) * C * M + m0 : static_cast<int64_t>(m0) * V + ct * C;
    first = cm.cu == nullptr ? n * ((cm.seqlen + kChunk - 1) / kChunk) : cm.seq_chunk_off[n];
    nc = static_cast<int>(cm.cu == nullptr ? (cm.seqlen + kChunk - 1) / kChunk
                                           : cm.seq_chunk_off[n + 1] - first);
    seq_tok0 = cm.cu == nullptr ? n * cm.seqlen : cm.cu[n];
    seq_len = cm.cu == nullptr ? cm.seqlen : cm.cu[n + 1] - seq_tok0;
  }
  // The walk's copy pipeline: kStages buffer sets, chunks kStages - 1 ahead, for
  // an issue that commits kGroups groups per chunk. Chunks past the end commit
  // empty groups so the count of pending groups stays fixed. Set
  // (c + kStages - 1) % kStages was last read by chunk c - 1, whose warps are
  // past the step's closing barrier. begin_step returns chunk c's set, its copies
  // landed and visible to the block.
  template <int kStages, int kGroups, typename Issue>
  __device__ __forceinline__ void prologue(Issue& issue) const {
#pragma unroll
    for (int c = 0; c < kStages - 1; ++c) issue_or_skip<kGroups>(c, c, issue);
  }
  template <int kStages, int kGroups, typename Issue>
  __device__ __forceinline__ int begin_step(int c, Issue& issue) const {
    const int ahead = c + kStages - 1;
    issue_or_skip<kGroups>(ahead, ahead % kStages, issue);
    async_wait_older<kGroups * (kStages - 1)>();
    return c % kStages;
  }
  template <int kGroups, typename Issue>
  __device__ __forceinline__ void issue_or_skip(int c, int b, Issue& issue) const {
    if (c < nc) {
      issue(c, b);
    } else {
#pragma unroll
      for (int i = 0; i < kGroups; ++i) async_commit();
    }
  }
  // Chunk c's operands by cp.async, three groups: its k or v column tile into X,
  // its W slice into W (W's rows hold T values at the start of each fp32 token
  // row of wbuf, 2 * H * M T apart), its decays G_L into GL.
  __device__ __forceinline__ void issue(const ChunkMap& cm, int H, int K, int V, int M,
                                        const T* k, const T* v,
                        const float* wbuf, const float* gl, int c, T* X, int ldx, T* W, int ldw,
                        float* GL) const {
    const ChunkPos cp = chunk_pos(cm, first + c);
    const int xdim = is_k ? K : V;
    const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;
    async_tile(X, ldx, (is_k ? k : v) + (cp.tok0 * H + h) * xdim + ct * kWalkCols,
               static_cast<int64_t>(H) * xdim, kChunk, cp.L, kWalkCols);
    async_tile(W, ldw, reinterpret_cast<const T*>(wbuf + tokM) + m0, rowM * 4 / sizeof(T),
               kChunk, cp.L, MS);
    async_floats(GL, MS, gl + (cp.j * H + h) * M + m0, MS, 1, 1, MS);
  }
};

// What the register walk multiplies, and in which order it takes the chunks.
// Forward (chunk-start states): X = k for Hk and v for Hv, W = s e^{G_L - G}
// for both, as T at the start of each fp32 token row of the prep's buffer
// (wrow = 2 H M). Backward (end-state gradients, reverse): X = q for dHk and dO
// for dHv, W = scale e^G du for dHk and p e^G for dHv, rows of T (wrow = H M).
template <typename T>
struct WalkOperands {
  const T *xk, *xv, *wk, *wv;
  int64_t wrow;  // W's token stride in T; a head's rows are wrow / H apart
  bool reverse;
};

// This thread's share of a chunk's copies for the register walk (16-bit T,
// kWalkThreads threads), every offset that does not depend on the chunk worked
// out once. Nsight Compute (M = 256, T = 32K, 32-wide tiles at two blocks per
// SM): the generic tile copies' per-call index arithmetic and chunk_pos's 64-bit
// division were two thirds of the walk's instructions, with 51% of issue slots
// busy; placed once, the walk took 0.65 ms instead of 0.93. A chunk is one group: its X
// rows (kWalkCols T, eight 16-byte pieces: one piece per thread), its W rows
// (MS / 8 pieces each: one per thread at MS = 64, half the threads at 32) and its
// decays G_L (MS / 4 pieces).
template <typename T>
struct WalkCopies {
  static_assert(sizeof(T) == 2, "the register walk takes 16-bit inputs");
  static constexpr int kPer = 16 / sizeof(T);           // T per piece
  static constexpr int kXPieces = kWalkCols / kPer;     // per X row
  static_assert(kChunk * kXPieces == kWalkThreads, "one X piece per thread");
  const T* xbase;      // the tile's X columns at the sequence's first token
  const T* wbase;      // W's slot slice at the sequence's first token
  const float* glbase; // G_L's slot slice of the sequence's first chunk
  int64_t xrow, wrow;  // token strides of X and W (in T)
  int64_t glrow;       // G_L's chunk stride
  int x_row, x_src, w_row, w_src, w_rstep, w_sstep, nc;
  unsigned x_dst, w_dst, w_dstep, gl_dst, x_set, w_set, gl_set;  // shared addresses; per set
  bool gl_on, reverse;
  int64_t seq_len;

  __device__ WalkCopies(const WalkTile<T>& wt, const WalkSmem<T>& L_, unsigned char* smem, int H,
                        int K, int V, int M, const WalkOperands<T>& op, const float* gl) {
    const int tid = threadIdx.x, xdim = wt.is_k ? K : V, MS = wt.MS;
    xrow = static_cast<int64_t>(H) * xdim;
    wrow = op.wrow;
    xbase = (wt.is_k ? op.xk : op.xv) + wt.seq_tok0 * xrow + wt.h * xdim + wt.ct * kWalkCols;
    wbase = (wt.is_k ? op.wk : op.wv) + wt.seq_tok0 * wrow + wt.h * (wrow / H) + wt.m0;
    nc = wt.nc;
    reverse = op.reverse;
    glrow = static_cast<int64_t>(H) * M;
    glbase = gl + (wt.first * H + wt.h) * M + wt.m0 + 4 * threadIdx.x;
    seq_len = wt.seq_len;
    x_row = tid / kXPieces;
    const int xc = (tid % kXPieces) * kPer;
    x_src = static_cast<int>(x_row * xrow) + xc;
    x_dst = static_cast<unsigned>(__cvta_generic_to_shared(L_.x(smem, 0) + x_row * L_.ldx + xc));
    const int wp = MS / kPer;  // pieces per W row: 8 or 4, dividing kWalkThreads
    w_row = tid / wp;
    w_rstep = kWalkThreads / wp;
    const int wc = (tid % wp) * kPer;
    w_src = static_cast<int>(w_row * wrow) + wc;
    w_sstep = static_cast<int>(w_rstep * wrow);
    w_dst = static_cast<unsigned>(__cvta_generic_to_shared(L_.w(smem, 0) + w_row * L_.ldw + wc));
    w_dstep = static_cast<unsigned>(w_rstep * L_.ldw * sizeof(T));
    gl_on = tid < MS / 4;
    gl_dst = static_cast<unsigned>(__cvta_generic_to_shared(L_.gl(smem, 0) + 4 * tid));
    x_set = static_cast<unsigned>(kChunk * L_.ldx * sizeof(T));
    w_set = static_cast<unsigned>(kChunk * L_.ldw * sizeof(T));
    gl_set = static_cast<unsigned>(kTile * sizeof(float));
  }
  // The sequence's chunk at walk step c (from the end when reverse).
  __device__ __forceinline__ int chunk_at(int c) const { return reverse ? nc - 1 - c : c; }
  // Step c's chunk into buffer set b, one commit group; rows past the
  // sequence's end are zero-filled (from the chunk's first row).
  __device__ __forceinline__ void operator()(int step, int b) const {
    const int c = chunk_at(step);
    const int64_t t0 = static_cast<int64_t>(c) * kChunk;
    const int64_t left = seq_len - t0;
    const int L = left < kChunk ? static_cast<int>(left) : kChunk;
    const T* xs = xbase + t0 * xrow;
    const T* ws = wbase + t0 * wrow;
    cp_async_piece<16>(x_dst + b * x_set, x_row < L ? xs + x_src : xs, x_row < L ? 16 : 0);
    unsigned wd = w_dst + b * w_set;
    int src = w_src, r = w_row;
    for (; r < kChunk; src += w_sstep, r += w_rstep, wd += w_dstep)
      cp_async_piece<16>(wd, r < L ? ws + src : ws, r < L ? 16 : 0);
    if (gl_on) cp_async_piece<16>(gl_dst + b * gl_set, glbase + c * glrow, 16);
    async_commit();
  }
};

// grid (N * tiles, H), tiles as in WalkTile.
template <typename T>
__global__ void __launch_bounds__(kThreads) state_walk_kernel(
    ChunkMap cm, int H, int K, int V, int M, const T* __restrict__ k, const T* __restrict__ v,
    const float* __restrict__ wbuf, const float* __restrict__ gl,
    const float* __restrict__ init_k, const float* __restrict__ init_v, T* __restrict__ hk,
    T* __restrict__ hv, float* __restrict__ out_k, float* __restrict__ out_v) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const WalkSmem<T> L_(M, 2, true);
  constexpr int C = kWalkCols;
  const WalkTile<T> wt(cm, K, V, M);
  const bool is_k = wt.is_k;
  const int MS = wt.MS, rows = wt.rows, cols = wt.cols, nc = wt.nc, h = wt.h;
  const int64_t size = wt.size, ld = wt.ld, off = wt.off, first = wt.first;
  float* Hs = reinterpret_cast<float*>(smem_raw);
  auto issue = [&](int c, int b) {
    wt.issue(cm, H, K, V, M, k, v, wbuf, gl, c, L_.x(smem_raw, b), L_.ldx, L_.w(smem_raw, b),
             L_.ldw, L_.gl(smem_raw, b));
  };
  const float* init = is_k ? init_k : init_v;
  const int64_t nh = static_cast<int64_t>(wt.n) * H + h;
  for (int idx = threadIdx.x; idx < rows * cols; idx += blockDim.x) {
    const int i = idx / cols, j = idx - i * cols;
    Hs[i * L_.ldh + j] = init != nullptr ? init[nh * size + off + i * ld + j] : 0.f;
  }
  wt.template prologue<2, 3>(issue);  // issue commits three groups per chunk
  T* state = is_k ? hk : hv;
  const int quads = cols / 4;
  for (int c = 0; c < nc; ++c) {
    const int b = wt.template begin_step<2, 3>(c, issue);
    // The chunk-start state out, then decayed by the chunk's total.
    const int64_t unit = (first + c) * H + h;
    const float* gL = L_.gl(smem_raw, b);
    for (int idx = threadIdx.x; idx < rows * quads; idx += blockDim.x) {
      const int i = idx / quads, j = (idx - i * quads) * 4;
      float4 x = *reinterpret_cast<const float4*>(Hs + i * L_.ldh + j);
      store4(state + unit * size + off + i * ld + j, x);
      if (is_k) {  // decay by column (slot)
        x.x *= __expf(gL[j]), x.y *= __expf(gL[j + 1]), x.z *= __expf(gL[j + 2]),
            x.w *= __expf(gL[j + 3]);
      } else {  // by row (slot)
        const float d = __expf(gL[i]);
        x.x *= d, x.y *= d, x.z *= d, x.w *= d;
      }
      *reinterpret_cast<float4*>(Hs + i * L_.ldh + j) = x;
    }
    __syncthreads();
    const T* Xc = L_.x(smem_raw, b);
    const T* Wc = L_.w(smem_raw, b);
    if (is_k) block_mma<true, false>(Hs, L_.ldh, Xc, L_.ldx, Wc, L_.ldw, C, MS, kChunk, true);
    else block_mma<true, false>(Hs, L_.ldh, Wc, L_.ldw, Xc, L_.ldx, MS, C, kChunk, true);
    __syncthreads();
  }
  float* out = is_k ? out_k : out_v;
  if (out != nullptr)
    for (int idx = threadIdx.x; idx < rows * cols; idx += blockDim.x) {
      const int i = idx / cols, j = idx - i * cols;
      out[nh * size + off + i * ld + j] = Hs[i * L_.ldh + j];
    }
}

// The walk with the state tile in registers (16-bit inputs): each warp keeps a
// 16 x (8 NT) piece of the 64 x 64 (or 64 x 32) tile as mma.sync accumulators,
// writes it out as the chunk-start state, scales it by the decay in place and
// adds its share of the chunk's product, so a step has no shared-memory round
// trip of the state and one barrier besides the tile copies'. Same grid, tiles
// and prep as state_walk_kernel. NT: n8 tiles per warp, 2 when the slot slice
// is 64 wide, 1 at M = 32. One block of kWalkThreads per SM: up to 128 registers
// (at 80, an earlier version spilled in the step loop).
template <typename T, int NT>
__global__ void __launch_bounds__(kWalkThreads, 1) state_walk_regs_kernel(
    ChunkMap cm, int H, int K, int V, int M, const WalkOperands<T> op,
    const float* __restrict__ gl, const float* __restrict__ init_k,
    const float* __restrict__ init_v, T* __restrict__ hk, T* __restrict__ hv,
    float* __restrict__ out_k, float* __restrict__ out_v) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const WalkSmem<T> L_(M, kWalkStages, false);
  const WalkTile<T> wt(cm, K, V, M);
  const bool is_k = wt.is_k;
  const int cols = wt.cols, nc = wt.nc, h = wt.h;
  const int64_t size = wt.size, ld = wt.ld, off = wt.off, first = wt.first;
  const WalkCopies<T> issue(wt, L_, smem_raw, H, K, V, M, op, gl);
  // This warp's piece: rows [r0, +16), columns [n0, +8 NT) of the tile.
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int groups = cols / (8 * NT), r0 = (warp / groups) * 16, n0 = (warp % groups) * 8 * NT;
  T* stage = L_.stage(smem_raw, warp);
  auto row_of = [&](int e) { return r0 + g + ((e >> 1) << 3); };
  auto col_of = [&](int nt, int e) { return n0 + nt * 8 + 2 * tq + (e & 1); };
  const float* init = is_k ? init_k : init_v;
  const int64_t nh = static_cast<int64_t>(wt.n) * H + h;
  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      acc[nt][e] = init != nullptr ? init[nh * size + off + row_of(e) * ld + col_of(nt, e)] : 0.f;
  wt.template prologue<kWalkStages, 1>(issue);
  T* state = is_k ? hk : hv;
  for (int c = 0; c < nc; ++c) {
    const int b = wt.template begin_step<kWalkStages, 1>(c, issue);
    const int64_t unit = (first + issue.chunk_at(c)) * H + h;
    const float* gL = L_.gl(smem_raw, b);
    T* out = state + unit * size + off;
    store_acc_rows<T, NT>(out + r0 * ld + n0, ld, acc, stage);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {  // (e, e + 1): two adjacent columns of one row
        const int i = row_of(e), j = col_of(nt, e);
        if (is_k) {  // decay by column (slot)
          acc[nt][e] *= __expf(gL[j]);
          acc[nt][e + 1] *= __expf(gL[j + 1]);
        } else {  // by row (slot)
          const float d = __expf(gL[i]);
          acc[nt][e] *= d;
          acc[nt][e + 1] *= d;
        }
      }
    const T* Xc = L_.x(smem_raw, b);
    const T* Wc = L_.w(smem_raw, b);
    // Hk += X^T W (rows: k, columns: slots); Hv += W^T X (rows: slots, columns: v).
    if (is_k) warp_mma_tokens<T, NT>(acc, Xc, L_.ldx, Wc, L_.ldw, r0, n0);
    else warp_mma_tokens<T, NT>(acc, Wc, L_.ldw, Xc, L_.ldx, r0, n0);
    __syncthreads();  // every warp is done with set b before the next step refills it
  }
  float* fin = is_k ? out_k : out_v;
  if (fin != nullptr)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) fin[nh * size + off + row_of(e) * ld + col_of(nt, e)] = acc[nt][e];
}

// The walk's grid: (N * tiles, H), tiles as in WalkTile.
dim3 walk_grid(const Plan& p) {
  const int nm = static_cast<int>(p.M) / slice_of(static_cast<int>(p.M));
  const int64_t tiles = (p.K / kWalkCols) * nm + nm * (p.V / kWalkCols);
  return dim3(static_cast<unsigned>(p.N * tiles), static_cast<unsigned>(p.H));
}

// The register walk (16-bit T) in either direction: op says what it multiplies;
// init (nullptr = zero) starts it, out gets each chunk's state, fin the last.
template <typename T>
void launch_regs_walk(const Plan& p, const WalkOperands<T>& op, const float* init_k,
                      const float* init_v, void* out_k, void* out_v, float* fin_k, float* fin_v,
                      cudaStream_t stream) {
  const size_t smem = WalkSmem<T>(static_cast<int>(p.M), kWalkStages, false).bytes();
  auto launch = [&](auto kernel) {
    set_smem(kernel, smem, "gsa state_walk_regs_kernel");
    kernel<<<walk_grid(p), kWalkThreads, smem, stream>>>(
        chunk_map(p), p.H, p.K, p.V, p.M, op, p.gl, init_k, init_v, static_cast<T*>(out_k),
        static_cast<T*>(out_v), fin_k, fin_v);
  };
  if (slice_of(static_cast<int>(p.M)) == kTile) launch(state_walk_regs_kernel<T, 2>);
  else launch(state_walk_regs_kernel<T, 1>);
  RAVENSP_LAUNCH_CHECK("gsa state_walk_regs_kernel");
}

template <typename T>
void walk_typed(const Plan& p, const void* k, const void* v, const void* s, const void* g,
                const float* init_k, const float* init_v, float* out_k, float* out_v,
                float* wbuf, cudaStream_t stream) {
  const int MS = slice_of(static_cast<int>(p.M)), nm = static_cast<int>(p.M) / MS;
  const size_t prep_smem = kChunk * ld_ew(MS) * sizeof(float);
  walk_prep_kernel<T><<<dim3(p.NC, p.H, nm), kThreads, prep_smem, stream>>>(
      chunk_map(p), p.H, p.M, static_cast<const T*>(s), static_cast<const T*>(g), wbuf, p.gl);
  RAVENSP_LAUNCH_CHECK("gsa walk_prep_kernel");
  if constexpr (sizeof(T) == 2) {  // the state in registers (mma.sync)
    const T* w = reinterpret_cast<const T*>(wbuf);
    const WalkOperands<T> op{static_cast<const T*>(k), static_cast<const T*>(v), w, w,
                             p.H * p.M * static_cast<int64_t>(sizeof(float) / sizeof(T)), false};
    launch_regs_walk<T>(p, op, init_k, init_v, p.hk, p.hv, out_k, out_v, stream);
  } else {  // fp32: the state tile in shared memory
    const size_t smem = WalkSmem<T>(static_cast<int>(p.M), 2, true).bytes();
    set_smem(state_walk_kernel<T>, smem, "gsa state_walk_kernel");
    state_walk_kernel<T><<<walk_grid(p), kThreads, smem, stream>>>(
        chunk_map(p), p.H, p.K, p.V, p.M, static_cast<const T*>(k), static_cast<const T*>(v),
        wbuf, p.gl, init_k, init_v, static_cast<T*>(p.hk), static_cast<T*>(p.hv), out_k, out_v);
    RAVENSP_LAUNCH_CHECK("gsa state_walk_kernel");
  }
}

// About one wave of the register walk's blocks on an H100 (132 SMs, one each).
constexpr int64_t kWalkMinBlocks = 128;

// RAVENSP_GSA_STATES=walk or =scan forces a route (the tests run both);
// otherwise the walk runs when its blocks fill the GPU about once.
bool use_walk(const Plan& p) {
  const char* env = std::getenv("RAVENSP_GSA_STATES");  // checked by check_state_route
  if (env != nullptr && *env != '\0') return std::strcmp(env, "walk") == 0;
  const dim3 grid = walk_grid(p);
  return static_cast<int64_t>(grid.x) * grid.y >= kWalkMinBlocks;
}

template <typename T>
void reverse_walk_typed(const Plan& p, const void* q, const void* dout, const void* ow,
                        const void* pw, const float* end_k, const float* end_v, float* d0_k,
                        float* d0_v, void* dhk, void* dhv, cudaStream_t stream) {
  const WalkOperands<T> op{static_cast<const T*>(q), static_cast<const T*>(dout),
                           static_cast<const T*>(ow), static_cast<const T*>(pw), p.H * p.M, true};
  launch_regs_walk<T>(p, op, end_k, end_v, dhk, dhv, d0_k, d0_v, stream);
}

}  // namespace

bool use_reverse_walk(const Plan& p) {
  return (p.dtype == DType::kBFloat16 || p.dtype == DType::kFloat16) && use_walk(p);
}

void launch_reverse_walk(const Plan& p, const void* q, const void* dout, const void* ow,
                         const void* pw, const float* end_k, const float* end_v, float* d0_k,
                         float* d0_v, void* dhk, void* dhv, cudaStream_t stream) {
  RAVENSP_CHECK(use_reverse_walk(p), "gsa reverse walk: needs 16-bit inputs and the walk route, "
                "got dtype ", dtype_name(p.dtype));
  if (p.dtype == DType::kBFloat16)
    reverse_walk_typed<__nv_bfloat16>(p, q, dout, ow, pw, end_k, end_v, d0_k, d0_v, dhk, dhv,
                                      stream);
  else
    reverse_walk_typed<__half>(p, q, dout, ow, pw, end_k, end_v, d0_k, d0_v, dhk, dhv, stream);
}

void check_state_route() {
  const char* env = std::getenv("RAVENSP_GSA_STATES");
  RAVENSP_CHECK(env == nullptr || *env == '\0' || std::strcmp(env, "walk") == 0 ||
                    std::strcmp(env, "scan") == 0,
                "RAVENSP_GSA_STATES must be 'walk' or 'scan' (or unset: chosen by shape), got '",
                env == nullptr ? "" : env, "'");
}

void launch_chunk_states(const Plan& p, const void* k, const void* v, const void* s,
                         const void* g, const float* init_k, const float* init_v, float* out_k,
                         float* out_v, float* scratch, cudaStream_t stream) {
  if (use_walk(p)) {
    switch (p.dtype) {
      case DType::kBFloat16:
        return walk_typed<__nv_bfloat16>(p, k, v, s, g, init_k, init_v, out_k, out_v, scratch,
                                         stream);
      case DType::kFloat16:
        return walk_typed<__half>(p, k, v, s, g, init_k, init_v, out_k, out_v, scratch, stream);
      default:
        return walk_typed<float>(p, k, v, s, g, init_k, init_v, out_k, out_v, scratch, stream);
    }
  }
  launch_local_states(p, k, v, s, g, stream);
  launch_combine(p, false, p.hk, p.hv, init_k, init_v, out_k, out_v, stream);
}

}  // namespace ravensp::kernels::gsa_cuda
