// GSA backward, per chunk (CUDA), in three kernels. Each leaves what the next
// one needs prepared in the workspace, so no block rebuilds a chunk's decay that
// another kernel already had at hand (BwdBufs in gsa_plan.h):
//   (1) pairs: the intra-chunk part of ds, the matching part of the decay
//       gradient's summand, and the pair matrices Bm[t][i] = sum_m s_im
//       e^{G_tm - G_im} du_tm and A2 (same with p) for (3), from the q k^T and
//       dO v^T that bwd_scores left; du becomes du e^G. Needs no state
//       gradient, so the split backward runs it while the end-state gradients
//       are exchanged;
//   (2) ds_state: after the reverse scan has put the gradient at each chunk's
//       end state in dhk/dhv, the state part of ds, then dg; leaves
//       W = s e^{G_L - G} for (3) (w_row);
//   (3) dq, dk, dv, one 64-column output tile per block (dq needs no state
//       gradient either).
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_intra.cuh"
#include "kernels/gsa/gsa_launch.cuh"
#include "kernels/gsa/gsa_pipeline.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels::gsa_cuda {
namespace {

constexpr int kDsSlice = 32;  // slot slice of ds_state (keeps its shared memory small)
// The kernels below hand dqkv its 16-bit operands inside fp32 token buffers
// ([tokens, H, M]) they have finished reading: row r's M values of T sit at the
// start of row r's own 4M bytes. A block only writes rows of its own chunk, and
// only slots of a slice it has already loaded (slot m lands on the bytes of
// fp32 slot m * sizeof(T) / 4 <= m), so no block overwrites a value that is
// still to be read.
template <typename T>
__device__ __forceinline__ T* row_view(float* rows, int64_t row_start) {
  return reinterpret_cast<T*>(rows + row_start);
}

// Where ds_state leaves W (slot m at [m]) for dqkv. 16-bit: the upper half of
// du's row, free once pairs has put du e^G (as T) in the lower half, so each
// slot slice of ds_state (one block each) writes bytes no other block reads.
// (W over dgca's own row, which ds_state reads, raced: slot m's T lands on fp32
// slot m / 2, another slice's.) fp32: dgca's row itself, slot on slot.
template <typename T, typename F>
__device__ __forceinline__ auto w_row(F* du, F* dgca, int64_t row_start, int M) {
  using R = std::conditional_t<std::is_const_v<F>, const T, T>;
  if constexpr (sizeof(T) == 4) return reinterpret_cast<R*>(dgca + row_start);
  else return reinterpret_cast<R*>(du + row_start) + M;
}

// Slot slice of pairs: at 16 its four fp32 pair matrices, six slot-slice
// buffers, the slice's g and s as copied and the scratch take 111 KB, so two
// blocks share an SM (140 KB at 32). The slot-slice buffers' rows are 20 floats:
// p, du and dgca arrive by 16-byte cp.async (the 4-byte pieces into odd rows
// were a fifth of the kernel's instructions), and the intra helpers' fragment
// reads (8 rows x 4 slots per warp) stay free of bank conflicts.
constexpr int kPairsSlice = 16;

template <typename T>
struct PairsSmem {
  int lda, lde;
  __host__ __device__ PairsSmem() : lda(ld_of<float>(kChunk)), lde(ld_of<float>(kPairsSlice)) {}
  __host__ __device__ size_t floats() const {
    return static_cast<size_t>(kChunk) * (4 * lda + 6 * lde) + 64;
  }
  __host__ __device__ size_t bytes() const {
    // The scratch of gated_pairs / gated_rev_sums (their fp32 form; the register
    // form for 16-bit inputs leaves it unused, as it leaves A2 when the forward
    // kept A2: 26 KB that a three-blocks-per-SM layout would drop), then the raw g
    // and s tiles.
    return (floats() + intra_scratch_floats(kPairsSlice)) * sizeof(float) +
           2 * static_cast<size_t>(kChunk) * kPairsSlice * sizeof(T);
  }
};

// grid (NC, H). Writes the intra-chunk ds (into ds, finished by ds_state) and
// subtracts s * ds_intra from dgca in place, so ds_state needs neither p nor du;
// leaves scale * du * e^G in du (as T, row_view), the operand of dq's state part,
// scale * Bm and, unless the forward kept it (a2_kept), A2.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) bwd_pairs_kernel(
    ChunkMap cm, int H, int M, float scale, const T* __restrict__ s, const T* __restrict__ g,
    const float* __restrict__ p, float* __restrict__ du, float* dgca, T* __restrict__ ds,
    float* __restrict__ bm_io, float* __restrict__ a2_io, bool a2_kept) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr bool kTC = sizeof(T) == 2;  // TF32 tensor cores for the intra-chunk products
  const PairsSmem<T> L_;
  constexpr int MS = kPairsSlice;
  float* A1 = reinterpret_cast<float*>(smem_raw);
  float* VdO = A1 + kChunk * L_.lda;
  float* Bm = VdO + kChunk * L_.lda;
  float* A2 = Bm + kChunk * L_.lda;
  float* Gs = A2 + kChunk * L_.lda;
  float* Ss = Gs + kChunk * L_.lde;
  float* Ps = Ss + kChunk * L_.lde;
  float* Du = Ps + kChunk * L_.lde;
  float* Ds = Du + kChunk * L_.lde;
  float* Dg = Ds + kChunk * L_.lde;
  float* scratch = reinterpret_cast<float*>(smem_raw) + L_.floats();
  T* Graw = reinterpret_cast<T*>(scratch + intra_scratch_floats(MS));
  T* Sraw = Graw + kChunk * MS;
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y;
  const int64_t unit = cp.j * H + h;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;

  // q k^T and dO v^T as bwd_scores left them, copied with the first slice's
  // tiles (its pair products do not need them).
  const int64_t pair = unit * kChunk * kChunk;
  async_tile(A1, L_.lda, bm_io + pair, static_cast<int64_t>(kChunk), kChunk, kChunk, kChunk);
  async_tile(VdO, L_.lda, a2_io + pair, static_cast<int64_t>(kChunk), kChunk, kChunk, kChunk);

  for (int m0 = 0; m0 < M; m0 += MS) {
    // The slice's five tiles in one round trip.
    async_floats(Ps, L_.lde, p + tokM + m0, rowM, kChunk, cp.L, MS);
    async_floats(Du, L_.lde, du + tokM + m0, rowM, kChunk, cp.L, MS);
    async_floats(Dg, L_.lde, dgca + tokM + m0, rowM, kChunk, cp.L, MS);
    async_tile(Graw, MS, g + tokM + m0, rowM, kChunk, cp.L, MS);
    async_tile(Sraw, MS, s + tokM + m0, rowM, kChunk, cp.L, MS);
    async_wait();
    if (m0 == 0)  // q k^T came with the first slice; chunk_decay's barriers order this
      for (int idx = threadIdx.x; idx < kChunk * kChunk; idx += blockDim.x)
        A1[(idx / kChunk) * L_.lda + idx % kChunk] *= scale;
    chunk_decay<T>(Gs, L_.lde, Graw, MS, cp.L, MS);
    convert_tile(Ss, L_.lde, Sraw, MS, kChunk, MS);
    __syncthreads();
    // Bm (and A2 unless the forward kept it), then the intra ds; with A2 kept
    // and 16-bit inputs both in one phase.
    if (kTC && a2_kept) {
      gated_pairs_and_rev_sums(Bm, Du, L_.lda, Ss, m0 > 0, Ds, L_.lde, A1, Du, VdO, Ps, L_.lda,
                               Gs, L_.lde, cp.L, MS);
    } else {
      gated_pairs<kTC>(Bm, Du, a2_kept ? nullptr : A2, a2_kept ? nullptr : Ps, L_.lda, Gs, Ss,
                       L_.lde, cp.L, MS, m0 > 0, scratch);
      gated_rev_sums<kTC>(Ds, L_.lde, A1, Du, VdO, Ps, L_.lda, Gs, L_.lde, cp.L, MS, scratch);
    }
    for (int idx = threadIdx.x; idx < cp.L * MS; idx += blockDim.x) {
      const int t = idx / MS, m = idx - t * MS;
      const int64_t at = tokM + t * rowM + m0 + m;
      const float d = Ds[t * L_.lde + m];
      ds[at] = from_f<T>(d);
      dgca[at] = Dg[t * L_.lde + m] - Ss[t * L_.lde + m] * d;
      // dq's state operand for dqkv, with dq's scale: scale du e^G.
      row_view<T>(du, tokM + t * rowM)[m0 + m] =
          from_f<T>(scale * Du[t * L_.lde + m] * __expf(Gs[t * L_.lde + m]));
    }
    __syncthreads();
  }
  // The pair matrices for bwd_dqkv, in the input dtype, over the start of the
  // fp32 areas they were read from.
  // Bm carries the scale of dq's and dk's intra parts.
  for (int idx = threadIdx.x; idx < kChunk * kChunk; idx += blockDim.x)
    Bm[(idx / kChunk) * L_.lda + idx % kChunk] *= scale;
  __syncthreads();
  store_square(reinterpret_cast<T*>(bm_io + pair), Bm, L_.lda);
  if (!a2_kept) store_square(reinterpret_cast<T*>(a2_io + pair), A2, L_.lda);
}

template <typename T>
struct DsStateSmem {
  int lde, ldc, ldx;
  __host__ __device__ DsStateSmem()
      : lde(ld_of<float>(kDsSlice)), ldc(ld_of<float>(kDsSlice)), ldx(ld_of<T>(kTile)) {}
  __host__ __device__ size_t floats() const {
    // red: the K sum's per-part partials (kThreads) and the V sums (kDsSlice).
    return static_cast<size_t>(kChunk) * (3 * lde + ldc) + kThreads + 2 * kDsSlice;
  }
  // The pipeline's two buffer sets (Xs, Ys) and (X1, Y1): a k or v tile and a
  // 64 x 32 or 32 x 64 state-gradient tile each.
  __host__ __device__ size_t bytes() const {
    return floats() * sizeof(float) + 4 * static_cast<size_t>(kChunk) * ldx * sizeof(T);
  }
};

// grid (NC * M / 32, H), one 32-slot slice per block: ds = ds_intra +
// e^{G_L - G} (.) (k dHk_end + v dHv_end^T) and dg_t = sum_{t' >= t in the
// chunk} (dgca - s ds_state)_t' plus, at the last token, the decay term
// sum Hk_end dHk_end + sum Hv_end dHv_end per slot. It leaves W = s e^{G_L - G}
// at w_row, the operand of the state parts of dk and dv.
// Three blocks per SM: 73 KB of shared memory (four at 54 KB without the
// pipeline's second buffer set).
template <typename T>
__global__ void __launch_bounds__(kThreads, 3) bwd_ds_state_kernel(
    ChunkMap cm, int H, int K, int V, int M, const T* __restrict__ k, const T* __restrict__ v,
    const T* __restrict__ s, const T* __restrict__ g, const T* __restrict__ hk,
    const T* __restrict__ hv, const float* __restrict__ fin_k,
    const float* __restrict__ fin_v, const T* __restrict__ dhk, const T* __restrict__ dhv,
    float* __restrict__ du, float* __restrict__ dgca, T* __restrict__ ds, T* __restrict__ dg) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const DsStateSmem<T> L_;
  constexpr int MS = kDsSlice;
  // x = chunk * slices + slice: a chunk's slices run side by side and share its
  // k and v tiles in L2 (with the slice as grid z they ran NC * H blocks apart
  // and each read them from DRAM, M / 32 times per chunk).
  const int ns = M / MS;
  const int64_t jb = blockIdx.x / ns;
  const int m0 = static_cast<int>(blockIdx.x - jb * ns) * MS;
  float* Gs = reinterpret_cast<float*>(smem_raw);
  float* Ss = Gs + kChunk * L_.lde;
  float* Dg = Ss + kChunk * L_.lde;
  float* Xc = Dg + kChunk * L_.lde;
  float* red = Xc + kChunk * L_.ldc;
  T* Xs = reinterpret_cast<T*>(reinterpret_cast<float*>(smem_raw) + L_.floats());
  T* Ys = Xs + kChunk * L_.ldx;
  T* X1 = Ys + kChunk * L_.ldx;
  T* Y1 = X1 + kChunk * L_.ldx;
  const ChunkPos cp = chunk_pos(cm, jb);
  const int h = blockIdx.y;
  const int64_t unit = cp.j * H + h, KM = static_cast<int64_t>(K) * M,
                MV = static_cast<int64_t>(M) * V;
  const int64_t tokK = (cp.tok0 * H + h) * K, rowK = static_cast<int64_t>(H) * K;
  const int64_t tokV = (cp.tok0 * H + h) * V, rowV = static_cast<int64_t>(H) * V;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;
  const bool last = cp.c + 1 == cp.nc;
  const int64_t fin = static_cast<int64_t>(cp.n) * H + h;
  // The chunk's end state: the next chunk's start (input dtype), or the final
  // state (fp32) for a sequence's last chunk.
  const T* hk_next = last ? nullptr : hk + (unit + H) * KM;
  const T* hv_next = last ? nullptr : hv + (unit + H) * MV;
  const float* hk_fin = fin_k + fin * KM;
  const float* hv_fin = fin_v + fin * MV;
  const T* dhk_end = dhk + unit * KM;
  const T* dhv_end = dhv + unit * MV;
  const int nk = K / kTile, nv = V / kTile;

  // The slice's g and s (into Xs, free until the products) and dgca in one
  // round trip.
  T* Graw = Xs;
  T* Sraw = Xs + kChunk * MS;
  async_tile(Graw, MS, g + tokM + m0, rowM, kChunk, cp.L, MS);
  async_tile(Sraw, MS, s + tokM + m0, rowM, kChunk, cp.L, MS);
  async_floats(Dg, L_.lde, dgca + tokM + m0, rowM, kChunk, cp.L, MS);
  async_wait();
  chunk_decay<T>(Gs, L_.lde, Graw, MS, cp.L, MS);
  convert_tile(Ss, L_.lde, Sraw, MS, kChunk, MS);
  __syncthreads();
  // Xc = k dHk_end[:, slice] + v dHv_end[slice, :]^T, pipelined over the K and
  // V tiles: a step's k or v tile and state-gradient tile are copied during
  // the previous step's product.
  pipelined_steps(
      nk + nv,
      [&](int z, int b) {
        T* X = b ? X1 : Xs;
        T* Y = b ? Y1 : Ys;
        if (z < nk) {
          async_tile(X, L_.ldx, k + tokK + z * kTile, rowK, kChunk, cp.L, kTile);
          async_tile(Y, L_.ldx, dhk_end + static_cast<int64_t>(z) * kTile * M + m0,
                     static_cast<int64_t>(M), kTile, kTile, MS);
        } else {
          async_tile(X, L_.ldx, v + tokV + (z - nk) * kTile, rowV, kChunk, cp.L, kTile);
          async_tile(Y, L_.ldx, dhv_end + static_cast<int64_t>(m0) * V + (z - nk) * kTile,
                     static_cast<int64_t>(V), MS, MS, kTile);
        }
      },
      [&](int z, int b) {
        const T* X = b ? X1 : Xs;
        const T* Y = b ? Y1 : Ys;
        if (z < nk)
          block_mma<false, false>(Xc, L_.ldc, X, L_.ldx, Y, L_.ldx, kChunk, MS, kTile, z > 0);
        else
          block_mma<false, true>(Xc, L_.ldc, X, L_.ldx, Y, L_.ldx, kChunk, MS, kTile, true);
      });
  // The slice's intra ds (from bwd_pairs) is copied while the decay term's sums
  // read the states.
  T* Dsraw = Xs;
  async_tile(Dsraw, MS, ds + tokM + m0, rowM, kChunk, cp.L, MS);
  // Last-token decay term: sum_k Hk_end dHk_end + sum_v Hv_end dHv_end per slot.
  // Both sums read along the states' contiguous dimension, eight elements per
  // 16-byte load and every load of a thread issued before the first is used
  // (Nsight Compute: the element-wise version's loads were a fifth of the
  // kernel's instructions, and its waits for them a fifth of its stalls).
  {
    static_assert(kThreads == 8 * MS, "a thread per 8 x 8 piece of the slice's rows");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Hk is [K][M]: a thread has 8 slots of rows r, r + 64, ...; the 8 lanes of
    // a warp with the same slots sum over their rows.
    {
      const int r = threadIdx.x >> 2, c = (threadIdx.x & 3) * 8;
      float acc[8] = {};
#pragma unroll 4
      for (int kk = r; kk < K; kk += kThreads / 4) {
        const int64_t at = static_cast<int64_t>(kk) * M + m0 + c;
        float e[8], d[8];
        if (last) load8(hk_fin + at, e);  // uniform: the sequence's final state is fp32
        else load8(hk_next + at, e);
        load8(dhk_end + at, d);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] = fmaf(e[j], d[j], acc[j]);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j)
        for (int o = 4; o < 32; o <<= 1) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], o);
      if (lane < 4)
#pragma unroll
        for (int j = 0; j < 8; ++j) red[warp * MS + c + j] = acc[j];
    }
    // Hv is [M][V]: a thread has one slot row and columns c, c + 64, ...; the 8
    // lanes of that row sum.
    {
      const int mm = threadIdx.x >> 3, c = (threadIdx.x & 7) * 8;
      const int64_t row = static_cast<int64_t>(m0 + mm) * V;
      float a = 0.f;
#pragma unroll 4
      for (int vv = c; vv < V; vv += 64) {
        float e[8], d[8];
        if (last) load8(hv_fin + row + vv, e);
        else load8(hv_next + row + vv, e);
        load8(dhv_end + row + vv, d);
#pragma unroll
        for (int j = 0; j < 8; ++j) a = fmaf(e[j], d[j], a);
      }
      for (int o = 1; o < 8; o <<= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
      if ((threadIdx.x & 7) == 0) red[kThreads + mm] = a;
    }
  }
  async_wait();
  for (int idx = threadIdx.x; idx < cp.L * MS; idx += blockDim.x) {
    const int t = idx / MS, m = idx - t * MS;
    const int64_t at = tokM + t * rowM + m0 + m;
    const float GL = Gs[(kChunk - 1) * L_.lde + m];
    const float dst = __expf(GL - Gs[t * L_.lde + m]) * Xc[t * L_.ldc + m];
    ds[at] = from_f<T>(to_f<T>(Dsraw[t * MS + m]) + dst);
    float dgc = Dg[t * L_.lde + m] - Ss[t * L_.lde + m] * dst;
    if (t == cp.L - 1) {
      for (int pr = 0; pr < kThreads / MS; ++pr) dgc += red[pr * MS + m];
      dgc += red[kThreads + m];
    }
    Dg[t * L_.lde + m] = dgc;
  }
  __syncthreads();
  for (int m = threadIdx.x; m < MS; m += blockDim.x) {
    float acc = 0.f;
    for (int t = cp.L - 1; t >= 0; --t) {
      acc += Dg[t * L_.lde + m];
      dg[tokM + t * rowM + m0 + m] = from_f<T>(acc);
    }
  }
  // W = s e^{G_L - G}, the operand of dk and dv.
  for (int idx = threadIdx.x; idx < cp.L * MS; idx += blockDim.x) {
    const int t = idx / MS, m = idx - t * MS;
    w_row<T>(du, dgca, tokM + t * rowM, M)[m0 + m] = from_f<T>(
        Ss[t * L_.lde + m] * __expf(Gs[(kChunk - 1) * L_.lde + m] - Gs[t * L_.lde + m]));
  }
}

template <typename T>
struct DqkvSmem {
  int lda, ldx;
  __host__ __device__ DqkvSmem() : lda(ld_of<float>(kChunk)), ldx(ld_of<T>(kTile)) {}
  __host__ __device__ size_t floats() const { return static_cast<size_t>(kChunk) * lda; }
  __host__ __device__ size_t bytes() const {
    return floats() * sizeof(float) + 4 * kChunk * ldx * sizeof(T);
  }
};

// grid (NC * nz, H): tile z0 + z, z < nz, of [dq columns (K/64) | dk columns | dv
// columns].
// Every operand comes prepared, as T: scale du e^G (left in du by pairs), W (left
// at w_row by ds_state), scale Bm and A2, so the 3 (K/64) + V/64 blocks of a chunk
// neither rebuild the chunk's decay nor convert anything.
//   dq = (scale e^G du) Hk^T + (scale Bm) k    dk = (scale Bm)^T q + W dHk_end^T
//   dv = A2^T dO + W dHv_end                   W = s exp(G_L - G)
template <typename T>
// Four blocks per SM: 54 KB of shared memory, 64 registers.
__global__ void __launch_bounds__(kThreads, 4) bwd_dqkv_kernel(
    ChunkMap cm, int H, int K, int V, int M, const T* __restrict__ q,
    const T* __restrict__ k, const T* __restrict__ dout, const T* __restrict__ hk,
    const T* __restrict__ dhk, const T* __restrict__ dhv,
    const float* __restrict__ du_eg, const float* __restrict__ dgca, const float* __restrict__ bm,
    const float* __restrict__ a2, const T* __restrict__ a2_kept, T* __restrict__ dq,
    T* __restrict__ dk, T* __restrict__ dv, int z0, int nz) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const DqkvSmem<T> L_;
  float* Acc = reinterpret_cast<float*>(smem_raw);
  T* Op = reinterpret_cast<T*>(reinterpret_cast<float*>(smem_raw) + L_.floats());
  T* Zs = Op + kChunk * L_.ldx;
  T* Xs = Zs + kChunk * L_.ldx;
  T* Rs = Xs + kChunk * L_.ldx;
  // x = chunk * nz + tile: a chunk's tiles run side by side and share its pair
  // matrix, operand rows and token tiles in L2 (with the tile as grid z they ran
  // NC * H blocks apart and each read them from DRAM).
  const int64_t jb = blockIdx.x / nz;
  const ChunkPos cp = chunk_pos(cm, jb);
  const int h = blockIdx.y, z = z0 + static_cast<int>(blockIdx.x - jb * nz), nk = K / kTile;
  const int which = z < nk ? 0 : (z < 2 * nk ? 1 : 2);  // dq, dk, dv
  const int ct = which == 2 ? z - 2 * nk : z - which * nk;
  const int MS = slice_of(M);
  const int64_t unit = cp.j * H + h, KM = static_cast<int64_t>(K) * M,
                MV = static_cast<int64_t>(M) * V;
  const int64_t tokK = (cp.tok0 * H + h) * K, rowK = static_cast<int64_t>(H) * K;
  const int64_t tokV = (cp.tok0 * H + h) * V, rowV = static_cast<int64_t>(H) * V;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;

  // The pair matrix (in T at the start of the chunk's fp32 area, see BwdBufs), the
  // token tile, each slice's state operand and state tile come in by cp.async
  // together: one wait on memory per slot slice.
  // A2 as pass 2 kept it ([NC, H, 64, 64] of T), or as bwd_pairs left it.
  const T* pair = which == 2 && a2_kept != nullptr
                      ? a2_kept + unit * kChunk * kChunk
                      : reinterpret_cast<const T*>((which == 2 ? a2 : bm) + unit * kChunk * kChunk);
  async_tile(Rs, L_.ldx, pair, static_cast<int64_t>(kChunk), kChunk, kChunk, kChunk);
  if (which == 0) async_tile(Xs, L_.ldx, k + tokK + ct * kTile, rowK, kChunk, cp.L, kTile);
  if (which == 1) async_tile(Xs, L_.ldx, q + tokK + ct * kTile, rowK, kChunk, cp.L, kTile);
  if (which == 2) async_tile(Xs, L_.ldx, dout + tokV + ct * kTile, rowV, kChunk, cp.L, kTile);
  // The T rows inside the fp32 token buffers (row_view): rowM floats apart.
  const T* op = which == 0 ? reinterpret_cast<const T*>(du_eg + tokM)
                           : w_row<T>(du_eg, dgca, tokM, M);
  const int64_t op_stride = rowM * static_cast<int64_t>(sizeof(float) / sizeof(T));
  for (int m0 = 0; m0 < M; m0 += MS) {
    async_tile(Op, L_.ldx, op + m0, op_stride, kChunk, cp.L, MS);
    if (which == 2) {
      async_tile(Zs, L_.ldx, dhv + unit * MV + static_cast<int64_t>(m0) * V + ct * kTile,
                 static_cast<int64_t>(V), MS, MS, kTile);
    } else {
      const T* st = (which == 0 ? hk : dhk) + unit * KM;
      async_tile(Zs, L_.ldx, st + static_cast<int64_t>(ct) * kTile * M + m0,
                 static_cast<int64_t>(M), kTile, kTile, MS);
    }
    async_wait();
    if (m0 == 0) {
      if (which == 0)
        block_mma<false, false>(Acc, L_.lda, Rs, L_.ldx, Xs, L_.ldx, 64, 64, 64, false);
      else
        block_mma<true, false>(Acc, L_.lda, Rs, L_.ldx, Xs, L_.ldx, 64, 64, 64, false);
      // Each warp re-reads the accumulator tiles it has just stored.
      __syncwarp();
    }
    if (which == 2) block_mma<false, false>(Acc, L_.lda, Op, L_.ldx, Zs, L_.ldx, 64, 64, MS, true);
    else block_mma<false, true>(Acc, L_.lda, Op, L_.ldx, Zs, L_.ldx, 64, 64, MS, true);
    __syncthreads();
  }
  T* out = which == 0 ? dq + tokK : (which == 1 ? dk + tokK : dv + tokV);
  const int64_t row = which == 2 ? rowV : rowK;
  store_tile(out + ct * kTile, row, Acc, L_.lda, cp.L, kTile);  // four at a time
}

template <typename T>
void pairs_typed(const Plan& pl, const GsaBwdParams& P, const float* p, const BwdBufs& b,
                 cudaStream_t stream) {
  const size_t smem = PairsSmem<T>().bytes();
  set_smem(bwd_pairs_kernel<T>, smem, "gsa bwd_pairs_kernel");
  bwd_pairs_kernel<T><<<dim3(pl.NC, pl.H), kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.M, static_cast<float>(P.scale), static_cast<const T*>(P.s),
      static_cast<const T*>(P.g), p, b.du, b.dgca, static_cast<T*>(P.ds), b.bm, b.a2,
      pl.a2 != nullptr);
  RAVENSP_LAUNCH_CHECK("gsa bwd_pairs_kernel");
}

template <typename T>
void ds_state_typed(const Plan& pl, const GsaBwdParams& P, const BwdBufs& b,
                    cudaStream_t stream) {
  const size_t smem = DsStateSmem<T>().bytes();
  set_smem(bwd_ds_state_kernel<T>, smem, "gsa bwd_ds_state_kernel");
  bwd_ds_state_kernel<T><<<dim3(pl.NC * (pl.M / kDsSlice), pl.H), kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.K, pl.V, pl.M, static_cast<const T*>(P.k),
      static_cast<const T*>(P.v), static_cast<const T*>(P.s), static_cast<const T*>(P.g),
      static_cast<const T*>(pl.hk), static_cast<const T*>(pl.hv), b.fin_k, b.fin_v,
      static_cast<const T*>(b.dhk), static_cast<const T*>(b.dhv), b.du, b.dgca,
      static_cast<T*>(P.ds),
      static_cast<T*>(P.dg));
  RAVENSP_LAUNCH_CHECK("gsa bwd_ds_state_kernel");
}

template <typename T>
void dqkv_typed(const Plan& pl, const GsaBwdParams& P, const BwdBufs& b, DqkvPart part,
                cudaStream_t stream) {
  const size_t smem = DqkvSmem<T>().bytes();
  set_smem(bwd_dqkv_kernel<T>, smem, "gsa bwd_dqkv_kernel");
  const int nk = static_cast<int>(pl.K / kTile), nz = 2 * nk + static_cast<int>(pl.V / kTile);
  const int z0 = part == DqkvPart::kDkDv ? nk : 0;
  const int z1 = part == DqkvPart::kDq ? nk : nz;
  dim3 grid(pl.NC * (z1 - z0), pl.H);
  bwd_dqkv_kernel<T><<<grid, kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.K, pl.V, pl.M,
      static_cast<const T*>(P.q), static_cast<const T*>(P.k), static_cast<const T*>(P.d_o),
      static_cast<const T*>(pl.hk), static_cast<const T*>(b.dhk), static_cast<const T*>(b.dhv),
      b.du, b.dgca,
      b.bm, b.a2, static_cast<const T*>(pl.a2), static_cast<T*>(P.dq),
      static_cast<T*>(P.dk), static_cast<T*>(P.dv), z0, z1 - z0);
  RAVENSP_LAUNCH_CHECK("gsa bwd_dqkv_kernel");
}

}  // namespace

void launch_bwd_pairs(const Plan& pl, const GsaBwdParams& P, const float* p, const BwdBufs& b,
                      cudaStream_t stream) {
  switch (pl.dtype) {
    case DType::kBFloat16: return pairs_typed<__nv_bfloat16>(pl, P, p, b, stream);
    case DType::kFloat16: return pairs_typed<__half>(pl, P, p, b, stream);
    default: return pairs_typed<float>(pl, P, p, b, stream);
  }
}

void launch_bwd_ds_state(const Plan& pl, const GsaBwdParams& P, const BwdBufs& b,
                         cudaStream_t stream) {
  switch (pl.dtype) {
    case DType::kBFloat16: return ds_state_typed<__nv_bfloat16>(pl, P, b, stream);
    case DType::kFloat16: return ds_state_typed<__half>(pl, P, b, stream);
    default: return ds_state_typed<float>(pl, P, b, stream);
  }
}

void launch_bwd_dqkv(const Plan& pl, const GsaBwdParams& P, const BwdBufs& b, DqkvPart part,
                     cudaStream_t stream) {
  switch (pl.dtype) {
    case DType::kBFloat16: return dqkv_typed<__nv_bfloat16>(pl, P, b, part, stream);
    case DType::kFloat16: return dqkv_typed<__half>(pl, P, b, part, stream);
    default: return dqkv_typed<float>(pl, P, b, part, stream);
  }
}

}  // namespace ravensp::kernels::gsa_cuda
