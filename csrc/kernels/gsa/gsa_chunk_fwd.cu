// Chunked GSA forward on CUDA: chunk map, local states, scan over chunks (see
// gsa_states.cu), then per chunk pass 1 (scores q^T Hk plus the gated
// intra-chunk term, fused slot softmax -> p) and pass 2 (o from p, Hv and the
// gated intra-chunk term). Products of the chunk with K, V and the states run on
// the tensor cores for 16-bit inputs; scores and softmax stay fp32, per-chunk
// states are stored in the input dtype (see Plan).
#include "kernels/gsa/gsa_common.cuh"
#include "kernels/gsa/gsa_cuda.h"
#include "kernels/gsa/gsa_gemm.cuh"
#include "kernels/gsa/gsa_intra.cuh"
#include "kernels/gsa/gsa_launch.cuh"
#include "kernels/gsa/gsa_pipeline.cuh"
#include "kernels/gsa/gsa_plan.h"

namespace ravensp::kernels {
namespace gsa_cuda {
namespace {

// Shared-memory layout of pass 1: the fp32 scores U and A, then a region that
// is the pipeline's second buffer set (q, k and state tiles) during the K-loop
// and the decay and s (fp32) after it, the first buffer set (the scratch of
// gated_scores after the loop), and the slice's g and s tiles as they arrive
// (copied during the K-loop). 111 KB at M >= 64 with bf16: two blocks per SM.
// The decay and s rows are an even number of floats, for two-slot loads in the
// intra helpers.
template <typename T>
struct Pass1Smem {
  int M, MS, ldu, lda, lde, ldx;
  size_t off_loop, off_tiles, off_raw, total;
  __host__ __device__ static constexpr size_t up(size_t x) { return (x + 127) / 128 * 128; }
  __host__ __device__ explicit Pass1Smem(int M_)
      : M(M_), MS(slice_of(M_)), ldu(ld_of<float>(slice_of(M_))), lda(ld_of<float>(kChunk)),
        lde(ld_of<float>(slice_of(M_))), ldx(ld_of<T>(kTile)) {
    off_loop = up(static_cast<size_t>(kChunk) * (ldu + lda) * sizeof(float));
    const size_t loop = max_of(2 * static_cast<size_t>(kChunk) * lde * sizeof(float),
                               3 * static_cast<size_t>(kChunk) * ldx * sizeof(T));
    off_tiles = up(off_loop + loop);
    const size_t tiles = max_of(3 * static_cast<size_t>(kChunk) * ldx * sizeof(T),
                                gated_scores_scratch_floats(MS) * sizeof(float));
    off_raw = up(off_tiles + tiles);
    total = off_raw + 2 * static_cast<size_t>(kChunk) * MS * sizeof(T);
  }
  __host__ __device__ size_t bytes() const { return total; }
};

// grid (NC, H): p[t] = softmax(scale * (exp(G_t) * (q_t^T Hk) + intra)) and, when
// lse is not null, each row's log-sum-exp (the backward rebuilds the scores
// from it); or with raw the scaled scores before the softmax (the split forward
// adds the incoming state's term to them later).
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) pass1_kernel(
    ChunkMap cm, int H, int K, int M, float scale, const T* __restrict__ q,
    const T* __restrict__ k, const T* __restrict__ s, const T* __restrict__ g,
    const T* __restrict__ hk, float* __restrict__ p, float* __restrict__ lse, bool raw) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr bool kTC = sizeof(T) == 2;  // TF32 tensor cores for the intra-chunk products
  const Pass1Smem<T> L_(M);
  float* U = reinterpret_cast<float*>(smem_raw);
  float* A = U + kChunk * L_.ldu;
  float* Gs = reinterpret_cast<float*>(smem_raw + L_.off_loop);
  float* Ss = Gs + kChunk * L_.lde;
  const int MS = L_.MS;
  T* X1 = reinterpret_cast<T*>(Gs);  // the loop region during the K-loop
  T* Y1 = X1 + kChunk * L_.ldx;
  T* Z1 = Y1 + kChunk * L_.ldx;
  T* X0 = reinterpret_cast<T*>(smem_raw + L_.off_tiles);
  T* Y0 = X0 + kChunk * L_.ldx;
  T* Z0 = Y0 + kChunk * L_.ldx;
  T* Graw = reinterpret_cast<T*>(smem_raw + L_.off_raw);
  T* Sraw = Graw + kChunk * MS;
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y;
  const int64_t unit = cp.j * H + h;
  const int64_t tokK = (cp.tok0 * H + h) * K, rowK = static_cast<int64_t>(H) * K;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;
  // Per slot slice: U = q Hk (the first slice also A = q k^T from the same q
  // tiles), pipelined over K with the slice's g and s tiles copied alongside,
  // then the gated intra term. U is one slice wide whatever M is: with more than
  // one slice the scaled scores go to p and the softmax runs there at the end.
  const bool sliced = M > MS;
  for (int m0 = 0; m0 < M; m0 += MS) {
    const bool first = m0 == 0;
    async_tile(Graw, MS, g + tokM + m0, rowM, kChunk, cp.L, MS);
    async_tile(Sraw, MS, s + tokM + m0, rowM, kChunk, cp.L, MS);
    pipelined_steps(
        K / kTile,
        [&](int kt, int b) {
          async_tile(b ? X1 : X0, L_.ldx, q + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
          if (first)
            async_tile(b ? Y1 : Y0, L_.ldx, k + tokK + kt * kTile, rowK, kChunk, cp.L, kTile);
          async_tile(b ? Z1 : Z0, L_.ldx,
                     hk + unit * K * M + static_cast<int64_t>(kt) * kTile * M + m0,
                     static_cast<int64_t>(M), kTile, kTile, MS);
        },
        [&](int kt, int b) {
          const T* X = b ? X1 : X0;
          if (first)
            block_mma<false, true>(A, L_.lda, X, L_.ldx, b ? Y1 : Y0, L_.ldx, kChunk, kChunk,
                                   kTile, kt > 0);
          block_mma<false, false>(U, L_.ldu, X, L_.ldx, b ? Z1 : Z0, L_.ldx, kChunk, MS, kTile,
                                  kt > 0);
        });
    chunk_decay<T>(Gs, L_.lde, Graw, MS, cp.L, MS);
    convert_tile(Ss, L_.lde, Sraw, MS, kChunk, MS);
    __syncthreads();
    gated_scores<kTC>(U, L_.ldu, U, L_.ldu, A, L_.lda, Gs, Ss, L_.lde, cp.L, MS, scale,
                      reinterpret_cast<float*>(X0));
    if (raw || sliced) {
      // A warp per row (an index division per element was a tenth of
      // bwd_scores' instructions in the same loop there).
      for (int t = threadIdx.x >> 5; t < cp.L; t += blockDim.x >> 5)
        for (int m = threadIdx.x & 31; m < MS; m += 32)
          p[tokM + t * rowM + m0 + m] = U[t * L_.ldu + m];
    } else {
      softmax_rows(U, L_.ldu, cp.L, M, p + tokM, rowM,
                   lse == nullptr ? nullptr : lse + cp.tok0 * H + h, H);
    }
    __syncthreads();
  }
  if (sliced && !raw)  // the block's own global writes are visible after the barrier
    for (int t = threadIdx.x >> 5; t < cp.L; t += blockDim.x / 32)
      warp_softmax(p + tokM + t * rowM, p + tokM + t * rowM, M,
                   lse == nullptr ? nullptr : lse + (cp.tok0 + t) * H + h);
}

// Slot slice of pass 2's pair phase: at 32 the pair phase's fp32 buffers stay
// small enough for two blocks per SM at every M.
constexpr int kPairSlice = 32;

// Shared memory of pass 2. Live throughout: A2 (fp32; the output tile once A2t
// exists), Pg = p e^G over all M slots and A2 as T. The pair phase (p of this
// slot slice and the next one as it arrives, G and s of this one, the next
// one's g and s as they arrive, and for fp32 inputs the intra scratch) and the
// output phase (two v tiles and two state tiles for the pipeline) share one
// region. 81 KB at M = 64, 103 KB at M = 256 with bf16: two blocks per SM.
template <typename T>
struct Pass2Smem {
  int MS, ldp, lda, lde, ldx;
  __host__ __device__ explicit Pass2Smem(int M)
      : MS(slice_of(M)), ldp(ld_of<T>(M)), lda(ld_of<float>(kChunk)), lde(ld_of<float>(kPairSlice)),
        ldx(ld_of<T>(kTile)) {}
  __host__ __device__ size_t kept_bytes() const {
    return static_cast<size_t>(kChunk) * (lda * sizeof(float) + (ldp + ldx) * sizeof(T));
  }
  static constexpr size_t scratch_floats() {
    return sizeof(T) == 2 ? 0 : intra_scratch_floats(kPairSlice);  // the register form needs none
  }
  __host__ __device__ size_t pair_bytes() const {
    return (4 * static_cast<size_t>(kChunk) * lde + scratch_floats()) * sizeof(float) +
           2 * static_cast<size_t>(kChunk) * kPairSlice * sizeof(T);
  }
  __host__ __device__ size_t out_bytes() const {
    return 4 * static_cast<size_t>(kChunk) * ldx * sizeof(T);
  }
  __host__ __device__ size_t bytes() const { return kept_bytes() + max_of(pair_bytes(), out_bytes()); }
};

// grid (NC, H): o_t = (p_t * exp(G_t))^T Hv + sum_{i<=t} A2[t][i] v_i with
// A2[t][i] = sum_m p_tm s_im exp(G_tm - G_im). The pair matrix and p e^G come
// first, over slot slices; then one 64-column output tile at a time, pipelined
// over (tile, slot slice) steps, so no [64 x V] fp32 accumulator is held.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) pass2_kernel(
    ChunkMap cm, int H, int M, int V, const T* __restrict__ v, const T* __restrict__ s,
    const T* __restrict__ g, const float* __restrict__ p, const T* __restrict__ hv,
    T* __restrict__ o, T* __restrict__ a2_out) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr bool kTC = sizeof(T) == 2;  // TF32 tensor cores for the intra-chunk products
  const Pass2Smem<T> L_(M);
  float* A2 = reinterpret_cast<float*>(smem_raw);
  float* Ot = A2;  // after A2t is made
  T* Pg = reinterpret_cast<T*>(A2 + kChunk * L_.lda);
  T* A2t = Pg + kChunk * L_.ldp;
  unsigned char* region = smem_raw + L_.kept_bytes();
  float* Ps0 = reinterpret_cast<float*>(region);
  float* Ps1 = Ps0 + kChunk * L_.lde;
  float* Gs = Ps1 + kChunk * L_.lde;
  float* Ss = Gs + kChunk * L_.lde;
  float* scratch = Ss + kChunk * L_.lde;
  constexpr int PS = kPairSlice;
  T* Graw = reinterpret_cast<T*>(scratch + L_.scratch_floats());
  T* Sraw = Graw + kChunk * PS;
  const int MS = L_.MS;
  T* Yv0 = reinterpret_cast<T*>(region);
  T* Yv1 = Yv0 + kChunk * L_.ldx;
  T* Z0 = Yv1 + kChunk * L_.ldx;
  T* Z1 = Z0 + kChunk * L_.ldx;
  const ChunkPos cp = chunk_pos(cm, blockIdx.x);
  const int h = blockIdx.y;
  const int64_t unit = cp.j * H + h;
  const int64_t tokM = (cp.tok0 * H + h) * M, rowM = static_cast<int64_t>(H) * M;
  const int64_t tokV = (cp.tok0 * H + h) * V, rowV = static_cast<int64_t>(H) * V;
  // The next slice's p, g and s are copied while this slice's pairs are formed
  // (p into the other of two buffers: the pairs read this slice's).
  auto issue = [&](int m0) {
    async_floats((m0 / PS) & 1 ? Ps1 : Ps0, L_.lde, p + tokM + m0, rowM, kChunk, cp.L, PS);
    async_tile(Graw, PS, g + tokM + m0, rowM, kChunk, cp.L, PS);
    async_tile(Sraw, PS, s + tokM + m0, rowM, kChunk, cp.L, PS);
  };
  issue(0);
  for (int m0 = 0; m0 < M; m0 += PS) {
    float* Ps = (m0 / PS) & 1 ? Ps1 : Ps0;
    async_wait();
    chunk_decay<T>(Gs, L_.lde, Graw, PS, cp.L, PS);
    convert_tile(Ss, L_.lde, Sraw, PS, kChunk, PS);
    __syncthreads();
    if (m0 + PS < M) issue(m0 + PS);
    gated_pairs<kTC>(A2, Ps, nullptr, nullptr, L_.lda, Gs, Ss, L_.lde, cp.L, PS, m0 > 0,
                     kTC ? nullptr : scratch);
    for (int idx = threadIdx.x; idx < kChunk * PS; idx += blockDim.x) {
      const int t = idx / PS, m = idx - t * PS;
      Pg[t * L_.ldp + m0 + m] = from_f<T>(Ps[t * L_.lde + m] * __expf(Gs[t * L_.lde + m]));
    }
    __syncthreads();
  }
  for (int idx = threadIdx.x; idx < kChunk * kChunk; idx += blockDim.x) {
    const int t = idx / kChunk, i = idx - t * kChunk;
    A2t[t * L_.ldx + i] = from_f<T>(A2[t * L_.lda + i]);
  }
  __syncthreads();
  // Kept for the backward (Plan::a2), which would otherwise form it again.
  if (a2_out != nullptr) {
    constexpr int kVec = 16 / sizeof(T), kPerRow = kChunk / kVec;
    T* dst = a2_out + unit * kChunk * kChunk;
    for (int idx = threadIdx.x; idx < kChunk * kPerRow; idx += blockDim.x) {
      const int t = idx / kPerRow, c = (idx - t * kPerRow) * kVec;
      *reinterpret_cast<uint4*>(dst + t * kChunk + c) =
          *reinterpret_cast<const uint4*>(A2t + t * L_.ldx + c);
    }
  }
  // Step st: output tile vt = st / ns, slot slice mi = st % ns. The v tile of vt
  // arrives with the tile's first step, into the buffer of vt's parity.
  const int ns = M / MS;
  pipelined_steps(
      (V / kTile) * ns,
      [&](int st, int b) {
        const int vt = st / ns, mi = st - vt * ns;
        if (mi == 0)
          async_tile((vt & 1) ? Yv1 : Yv0, L_.ldx, v + tokV + vt * kTile, rowV, kChunk, cp.L,
                     kTile);
        async_tile(b ? Z1 : Z0, L_.ldx,
                   hv + unit * M * V + static_cast<int64_t>(mi) * MS * V + vt * kTile,
                   static_cast<int64_t>(V), MS, MS, kTile);
      },
      [&](int st, int b) {
        const int vt = st / ns, mi = st - vt * ns;
        block_mma<false, false>(Ot, L_.lda, Pg + mi * MS, L_.ldp, b ? Z1 : Z0, L_.ldx, kChunk,
                                kTile, MS, mi > 0);
        if (mi + 1 < ns) return;
        // Same warp-to-strip map as the product above: no barrier between them.
        block_mma<false, false>(Ot, L_.lda, A2t, L_.ldx, (vt & 1) ? Yv1 : Yv0, L_.ldx, kChunk,
                                kTile, kChunk, true);
        __syncthreads();
        store_tile(o + tokV + vt * kTile, rowV, Ot, L_.lda, cp.L, kTile);  // four at a time
      });
}

template <typename T>
void pass1_typed(const Plan& pl, const GsaFwdParams& P, float* p_out, cudaStream_t stream,
                 bool raw) {
  const size_t smem = Pass1Smem<T>(static_cast<int>(pl.M)).bytes();
  set_smem(pass1_kernel<T>, smem, "gsa pass1_kernel");
  pass1_kernel<T><<<dim3(pl.NC, pl.H), kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.K, pl.M, static_cast<float>(P.scale), static_cast<const T*>(P.q),
      static_cast<const T*>(P.k), static_cast<const T*>(P.s), static_cast<const T*>(P.g),
      static_cast<const T*>(pl.hk), p_out, static_cast<float*>(P.lse), raw);
  RAVENSP_LAUNCH_CHECK("gsa pass1_kernel");
}

template <typename T>
void pass2_typed(const Plan& pl, const GsaFwdParams& P, const float* p, cudaStream_t stream) {
  const size_t smem = Pass2Smem<T>(static_cast<int>(pl.M)).bytes();
  set_smem(pass2_kernel<T>, smem, "gsa pass2_kernel");
  pass2_kernel<T><<<dim3(pl.NC, pl.H), kThreads, smem, stream>>>(
      chunk_map(pl), pl.H, pl.M, pl.V, static_cast<const T*>(P.v), static_cast<const T*>(P.s),
      static_cast<const T*>(P.g), p, static_cast<const T*>(pl.hv), static_cast<T*>(P.o),
      static_cast<T*>(pl.a2));
  RAVENSP_LAUNCH_CHECK("gsa pass2_kernel");
}

}  // namespace

void launch_pass1(const Plan& pl, const GsaFwdParams& P, float* p_out, cudaStream_t stream,
                  bool raw) {
  switch (pl.dtype) {
    case DType::kBFloat16: return pass1_typed<__nv_bfloat16>(pl, P, p_out, stream, raw);
    case DType::kFloat16: return pass1_typed<__half>(pl, P, p_out, stream, raw);
    default: return pass1_typed<float>(pl, P, p_out, stream, raw);
  }
}

void launch_pass2(const Plan& pl, const GsaFwdParams& P, const float* p, cudaStream_t stream) {
  switch (pl.dtype) {
    case DType::kBFloat16: return pass2_typed<__nv_bfloat16>(pl, P, p, stream);
    case DType::kFloat16: return pass2_typed<__half>(pl, P, p, stream);
    default: return pass2_typed<float>(pl, P, p, stream);
  }
}

}  // namespace gsa_cuda

namespace {

// The map and the state buffers: in the workspace, or with P.states in that
// buffer (then *fin_k / *fin_v point at its final states, else they are left).
gsa_cuda::Plan plan_fwd(const GsaFwdParams& P, gsa_cuda::Carver& c, float** fin_k,
                        float** fin_v) {
  gsa_cuda::Plan pl = gsa_cuda::make_plan(P.shape, P.dtype);
  gsa_cuda::carve_plan(pl, c, P.states, fin_k, fin_v);
  return pl;
}

void check_fwd(const char* fn, const GsaFwdParams& P) {
  gsa_cuda_check_supported(fn, P.shape, P.dtype, P.chunk_size);
  RAVENSP_CHECK(P.accum_dtype == DType::kFloat32, fn, ": CUDA accumulates in float32, got accum "
                "dtype ", dtype_name(P.accum_dtype));
  RAVENSP_CHECK(P.o != nullptr, fn, ": output o is null");
  gsa_cuda::check_state_route();
}

// Chunk map and the chunk-start states from (init_k, init_v; nullptr = zero):
// chunk-start states in the plan's buffers, end states into out_k / out_v when
// set.
void fwd_states(const gsa_cuda::Plan& pl, const GsaFwdParams& P, const float* init_k,
                const float* init_v, float* out_k, float* out_v, float* gcum, float* p,
                cudaStream_t stream) {
  gsa_cuda::launch_chunk_map(pl, stream);
  if (gcum == nullptr) {  // p is written by pass 1 after the states
    gsa_cuda::launch_chunk_states(pl, P.k, P.v, P.s, P.g, init_k, init_v, out_k, out_v, p,
                                  stream);
    return;
  }
  // The split forward needs the scan's running decay (gcum) as well.
  gsa_cuda::launch_local_states(pl, P.k, P.v, P.s, P.g, stream);
  gsa_cuda::launch_combine(pl, false, pl.hk, pl.hv, init_k, init_v, out_k, out_v, stream, gcum);
}

}  // namespace

size_t gsa_chunk_saved_states_bytes(const GsaShape& shape, DType dtype) {
  gsa_cuda::Plan pl = gsa_cuda::make_plan(shape, dtype);
  // Sized by the shape alone: a packed batch has at most one partial chunk per
  // sequence more than its tokens fill.
  const bool packed = shape.cu_seqlens != nullptr || shape.cu_seqlens_host != nullptr;
  const int64_t per = (shape.seqlen + gsa_cuda::kChunk - 1) / gsa_cuda::kChunk;
  pl.NC = packed ? per + shape.num_seqs - 1 : shape.num_seqs * per;
  gsa_cuda::Carver c(nullptr);
  float *fin_k = nullptr, *fin_v = nullptr;
  gsa_cuda::carve_saved(pl, c, &fin_k, &fin_v);
  return c.bytes();
}

size_t gsa_chunk_fwd_workspace_bytes(const GsaFwdParams& P) {
  gsa_cuda::Carver c(nullptr);
  float *fin_k = nullptr, *fin_v = nullptr;
  gsa_cuda::Plan pl = plan_fwd(P, c, &fin_k, &fin_v);
  if (P.p == nullptr) c.take<float>(pl.tokens * pl.H * pl.M);
  return c.bytes();
}

void gsa_chunk_fwd_cuda(const GsaFwdParams& P, void* workspace, cudaStream_t stream) {
  check_fwd("gsa_chunk_fwd", P);
  gsa_cuda::Carver c(workspace);
  float* fin_k = static_cast<float*>(P.hkT);
  float* fin_v = static_cast<float*>(P.hvT);
  gsa_cuda::Plan pl = plan_fwd(P, c, &fin_k, &fin_v);
  float* p = P.p != nullptr ? static_cast<float*>(P.p) : c.take<float>(pl.tokens * pl.H * pl.M);
  fwd_states(pl, P, static_cast<const float*>(P.hk0), static_cast<const float*>(P.hv0), fin_k,
             fin_v, nullptr, p, stream);
  if (P.states != nullptr) {  // the final states went to the kept buffer
    const size_t kb = static_cast<size_t>(pl.N * pl.H * pl.K * pl.M) * sizeof(float);
    const size_t vb = static_cast<size_t>(pl.N * pl.H * pl.M * pl.V) * sizeof(float);
    if (P.hkT != nullptr)
      RAVENSP_CUDA_CHECK(cudaMemcpyAsync(P.hkT, fin_k, kb, cudaMemcpyDeviceToDevice, stream));
    if (P.hvT != nullptr)
      RAVENSP_CUDA_CHECK(cudaMemcpyAsync(P.hvT, fin_v, vb, cudaMemcpyDeviceToDevice, stream));
  }
  gsa_cuda::launch_pass1(pl, P, p, stream);
  gsa_cuda::launch_pass2(pl, P, p, stream);
}

size_t gsa_chunk_fwd_split_workspace_bytes(const GsaFwdParams& P) {
  gsa_cuda::Carver c(nullptr);
  float *fin_k = nullptr, *fin_v = nullptr;
  gsa_cuda::Plan pl = plan_fwd(P, c, &fin_k, &fin_v);
  c.take<float>(pl.NC * pl.H * pl.M);
  return c.bytes();
}

void gsa_chunk_fwd_split_cuda(const GsaFwdParams& P, SplitPhase phase, void* workspace,
                              cudaStream_t stream) {
  check_fwd("gsa_chunk_fwd (split)", P);
  RAVENSP_CHECK(P.p != nullptr, "gsa_chunk_fwd (split): p must be non-null (the scores live "
                "there between the phases)");
  RAVENSP_CHECK(P.states == nullptr, "gsa_chunk_fwd (split): keeps no states for the backward "
                "(its phases shift the chunk states by the incoming state; states must be null)");
  gsa_cuda::Carver c(workspace);
  float *fin_k = nullptr, *fin_v = nullptr;
  gsa_cuda::Plan pl = plan_fwd(P, c, &fin_k, &fin_v);
  float* gcum = c.take<float>(pl.NC * pl.H * pl.M);
  float* p = static_cast<float*>(P.p);
  switch (phase) {
    case SplitPhase::kBegin:
      fwd_states(pl, P, nullptr, nullptr, static_cast<float*>(P.hkT), static_cast<float*>(P.hvT),
                 gcum, p, stream);
      return;
    case SplitPhase::kOverlap:
      gsa_cuda::launch_pass1(pl, P, p, stream, /*raw=*/true);
      return;
    case SplitPhase::kFinish:
      gsa_cuda::launch_inter_softmax(pl, P, gcum, p, stream);
      gsa_cuda::launch_shift_states(pl, gcum, nullptr, static_cast<const float*>(P.hv0), pl.hk,
                                    pl.hv, stream);
      gsa_cuda::launch_pass2(pl, P, p, stream);
      return;
  }
}

}  // namespace ravensp::kernels
