// CPU reference of the chunked GSA forward and backward (DESIGN.md §3).
//
// Per chunk of C tokens: intra-chunk products computed exactly (the decay
// exp(G_t - G_i) is evaluated per pair, never as exp(G_t) * exp(-G_i), so large
// decays cannot overflow), plus the inter-chunk state carried in the
// accumulation type. The backward recomputes the chunk-start states, then walks
// the chunks in reverse carrying the state gradients (dHk, dHv).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/gsa/params.h"
#include "kernels/gsa/seq_iter.h"
#include "ravensp/check.h"

namespace ravensp::kernels {
namespace {

using gsa_detail::Unit;
using gsa_detail::check_cpu_dtypes;
using gsa_detail::load_state;
using gsa_detail::tok;

// Buffers for one chunk of one unit: row-major [L][D].
template <typename T>
struct ChunkView {
  const GsaShape& sh;
  const Unit& u;
  int64_t c0, L;
  const T* q;
  const T* k;
  const T* v;
  const T* s;
  const T* g;
  const T* qp(int64_t t) const { return q + tok(sh, u, c0 + t, sh.head_k); }
  const T* kp(int64_t t) const { return k + tok(sh, u, c0 + t, sh.head_k); }
  const T* vp(int64_t t) const { return v + tok(sh, u, c0 + t, sh.head_v); }
  const T* sp(int64_t t) const { return s + tok(sh, u, c0 + t, sh.slots); }
  const T* gp(int64_t t) const { return g + tok(sh, u, c0 + t, sh.slots); }
};

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Cumulative log decay within the chunk: G[t][m] = sum_{j<=t} g_j[m].
template <typename T>
void chunk_cumsum(const ChunkView<T>& cv, std::vector<T>& G) {
  const int64_t M = cv.sh.slots;
  G.assign(cv.L * M, T(0));
  for (int64_t t = 0; t < cv.L; ++t) {
    const T* gt = cv.gp(t);
    for (int64_t m = 0; m < M; ++m) G[t * M + m] = (t ? G[(t - 1) * M + m] : T(0)) + gt[m];
  }
}

// Pass 1 pre-softmax scores u [L][M] given the key state at chunk start Hk [K][M].
template <typename T>
void pass1_scores(const ChunkView<T>& cv, const std::vector<T>& G, const T* Hk, T scale,
                  std::vector<T>& A1, std::vector<T>& u) {
  const int64_t K = cv.sh.head_k, M = cv.sh.slots, L = cv.L;
  A1.assign(L * L, T(0));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t i = 0; i <= t; ++i) A1[t * L + i] = scale * dot(cv.qp(t), cv.kp(i), K);
  u.assign(L * M, T(0));
  for (int64_t t = 0; t < L; ++t) {
    const T* qt = cv.qp(t);
    T* ut = &u[t * M];
    for (int64_t kk = 0; kk < K; ++kk) {
      const T qk = scale * qt[kk];
      const T* hrow = Hk + kk * M;
      for (int64_t m = 0; m < M; ++m) ut[m] += qk * hrow[m];
    }
    for (int64_t m = 0; m < M; ++m) ut[m] *= std::exp(G[t * M + m]);
    for (int64_t i = 0; i <= t; ++i) {
      const T a = A1[t * L + i];
      const T* si = cv.sp(i);
      for (int64_t m = 0; m < M; ++m) ut[m] += a * si[m] * std::exp(G[t * M + m] - G[i * M + m]);
    }
  }
}

// p rows (and, when lse is given, lse[t * lse_stride] = log sum_m exp(u_tm)).
template <typename T>
void softmax_rows(const std::vector<T>& u, int64_t L, int64_t M, T* p_rows, int64_t p_stride,
                  T* lse = nullptr, int64_t lse_stride = 0) {
  for (int64_t t = 0; t < L; ++t) {
    const T* ut = &u[t * M];
    T mx = ut[0];
    for (int64_t m = 1; m < M; ++m) mx = std::max(mx, ut[m]);
    T sum = 0;
    T* pt = p_rows + t * p_stride;
    for (int64_t m = 0; m < M; ++m) sum += (pt[m] = std::exp(ut[m] - mx));
    for (int64_t m = 0; m < M; ++m) pt[m] /= sum;
    if (lse != nullptr) lse[t * lse_stride] = mx + std::log(sum);
  }
}

// Advance both states over the chunk: Hk <- Hk diag(e^{G_L}) + sum_i k_i (s_i e^{G_L - G_i})^T,
// Hv <- diag(e^{G_L}) Hv + sum_i (s_i e^{G_L - G_i}) v_i^T.
template <typename T>
void advance_states(const ChunkView<T>& cv, const std::vector<T>& G, T* Hk, T* Hv) {
  const int64_t K = cv.sh.head_k, V = cv.sh.head_v, M = cv.sh.slots, L = cv.L;
  const T* GL = &G[(L - 1) * M];
  std::vector<T> w(M);
  for (int64_t kk = 0; kk < K; ++kk)
    for (int64_t m = 0; m < M; ++m) Hk[kk * M + m] *= std::exp(GL[m]);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t vv = 0; vv < V; ++vv) Hv[m * V + vv] *= std::exp(GL[m]);
  for (int64_t i = 0; i < L; ++i) {
    const T* si = cv.sp(i);
    for (int64_t m = 0; m < M; ++m) w[m] = si[m] * std::exp(GL[m] - G[i * M + m]);
    const T* ki = cv.kp(i);
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t m = 0; m < M; ++m) Hk[kk * M + m] += ki[kk] * w[m];
    const T* vi = cv.vp(i);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t vv = 0; vv < V; ++vv) Hv[m * V + vv] += w[m] * vi[vv];
  }
}

template <typename T>
void chunk_fwd(const GsaFwdParams& P) {
  const GsaShape& sh = P.shape;
  const int64_t K = sh.head_k, V = sh.head_v, M = sh.slots, C = P.chunk_size;
  const T scale = static_cast<T>(P.scale);
  const T *q = static_cast<const T*>(P.q), *k = static_cast<const T*>(P.k),
          *v = static_cast<const T*>(P.v), *s = static_cast<const T*>(P.s),
          *g = static_cast<const T*>(P.g);
  gsa_detail::for_each_unit(sh, [&](const Unit& u) {
    const int64_t sk = (u.n * sh.heads + u.h) * K * M, sv = (u.n * sh.heads + u.h) * M * V;
    std::vector<T> Hk(K * M), Hv(M * V), G, A1, uu, pbuf;
    load_state<T>(P.hk0, sk, K * M, Hk.data());
    load_state<T>(P.hv0, sv, M * V, Hv.data());
    for (int64_t c0 = u.bos; c0 < u.eos; c0 += C) {
      ChunkView<T> cv{sh, u, c0, std::min(C, u.eos - c0), q, k, v, s, g};
      const int64_t L = cv.L;
      chunk_cumsum(cv, G);
      pass1_scores(cv, G, Hk.data(), scale, A1, uu);
      pbuf.assign(L * M, T(0));
      softmax_rows(uu, L, M, pbuf.data(), M,
                   P.lse == nullptr ? nullptr : static_cast<T*>(P.lse) + tok(sh, u, c0, 1),
                   sh.heads);
      // Pass 2: o_t = (p_t e^{G_t})^T Hv + sum_{i<=t} [sum_m p_tm s_im e^{G_tm - G_im}] v_i.
      for (int64_t t = 0; t < L; ++t) {
        const T* pt = &pbuf[t * M];
        T* ot = static_cast<T*>(P.o) + tok(sh, u, c0 + t, V);
        std::fill(ot, ot + V, T(0));
        for (int64_t m = 0; m < M; ++m) {
          const T a = pt[m] * std::exp(G[t * M + m]);
          for (int64_t vv = 0; vv < V; ++vv) ot[vv] += a * Hv[m * V + vv];
        }
        for (int64_t i = 0; i <= t; ++i) {
          const T* si = cv.sp(i);
          T a = 0;
          for (int64_t m = 0; m < M; ++m) a += pt[m] * si[m] * std::exp(G[t * M + m] - G[i * M + m]);
          const T* vi = cv.vp(i);
          for (int64_t vv = 0; vv < V; ++vv) ot[vv] += a * vi[vv];
        }
        if (P.p != nullptr)
          std::copy(pt, pt + M, static_cast<T*>(P.p) + tok(sh, u, c0 + t, M));
      }
      advance_states(cv, G, Hk.data(), Hv.data());
    }
    if (P.hkT != nullptr) std::copy(Hk.begin(), Hk.end(), static_cast<T*>(P.hkT) + sk);
    if (P.hvT != nullptr) std::copy(Hv.begin(), Hv.end(), static_cast<T*>(P.hvT) + sv);
  });
}

template <typename T>
void chunk_bwd(const GsaBwdParams& P) {
  const GsaShape& sh = P.shape;
  const int64_t K = sh.head_k, V = sh.head_v, M = sh.slots, C = P.chunk_size;
  const T scale = static_cast<T>(P.scale);
  const T *q = static_cast<const T*>(P.q), *k = static_cast<const T*>(P.k),
          *v = static_cast<const T*>(P.v), *s = static_cast<const T*>(P.s),
          *g = static_cast<const T*>(P.g), *p = static_cast<const T*>(P.p),
          *d_o = static_cast<const T*>(P.d_o);
  T *dq = static_cast<T*>(P.dq), *dk = static_cast<T*>(P.dk), *dv = static_cast<T*>(P.dv),
    *ds = static_cast<T*>(P.ds), *dg = static_cast<T*>(P.dg);
  gsa_detail::for_each_unit(sh, [&](const Unit& u) {
    const int64_t sk = (u.n * sh.heads + u.h) * K * M, sv = (u.n * sh.heads + u.h) * M * V;
    const int64_t nchunks = (u.eos - u.bos + C - 1) / C;
    // States at every chunk boundary: index c holds the state entering chunk c;
    // index nchunks the final state.
    std::vector<T> Hks((nchunks + 1) * K * M), Hvs((nchunks + 1) * M * V), G, A1, uu;
    load_state<T>(P.hk0, sk, K * M, Hks.data());
    load_state<T>(P.hv0, sv, M * V, Hvs.data());
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t c0 = u.bos + c * C;
      ChunkView<T> cv{sh, u, c0, std::min(C, u.eos - c0), q, k, v, s, g};
      std::copy(Hks.begin() + c * K * M, Hks.begin() + (c + 1) * K * M, Hks.begin() + (c + 1) * K * M);
      std::copy(Hvs.begin() + c * M * V, Hvs.begin() + (c + 1) * M * V, Hvs.begin() + (c + 1) * M * V);
      chunk_cumsum(cv, G);
      advance_states(cv, G, &Hks[(c + 1) * K * M], &Hvs[(c + 1) * M * V]);
    }
    std::vector<T> dHk(K * M), dHv(M * V), dHk_prev(K * M), dHv_prev(M * V);
    load_state<T>(P.dhkT, sk, K * M, dHk.data());
    load_state<T>(P.dhvT, sv, M * V, dHv.data());
    std::vector<T> dp, du, dGc, ds1, ds2, Bm, A2, vdo, w(M), tmp(std::max({K, V, M}));
    for (int64_t c = nchunks - 1; c >= 0; --c) {
      const int64_t c0 = u.bos + c * C;
      ChunkView<T> cv{sh, u, c0, std::min(C, u.eos - c0), q, k, v, s, g};
      const int64_t L = cv.L;
      const T* Hk = &Hks[c * K * M];
      const T* Hv = &Hvs[c * M * V];
      const T* Hk_end = &Hks[(c + 1) * K * M];
      const T* Hv_end = &Hvs[(c + 1) * M * V];
      chunk_cumsum(cv, G);
      pass1_scores(cv, G, Hk, scale, A1, uu);
      const T* GL = &G[(L - 1) * M];
      auto P_ = [&](int64_t t) { return p + tok(sh, u, c0 + t, M); };
      auto DO = [&](int64_t t) { return d_o + tok(sh, u, c0 + t, V); };
      // ---- pass 2 backward ----
      vdo.assign(L * L, T(0));  // vdo[t][i] = v_i . do_t, i <= t
      A2.assign(L * L, T(0));   // A2[t][i] = sum_m p_tm s_im e^{G_tm - G_im}
      for (int64_t t = 0; t < L; ++t)
        for (int64_t i = 0; i <= t; ++i) {
          vdo[t * L + i] = dot(cv.vp(i), DO(t), V);
          const T *pt = P_(t), *si = cv.sp(i);
          T a = 0;
          for (int64_t m = 0; m < M; ++m) a += pt[m] * si[m] * std::exp(G[t * M + m] - G[i * M + m]);
          A2[t * L + i] = a;
        }
      dp.assign(L * M, T(0));
      ds2.assign(L * M, T(0));
      dGc.assign(L * M, T(0));
      for (int64_t t = 0; t < L; ++t) {
        T* dpt = &dp[t * M];
        const T* dot_ = DO(t);
        for (int64_t m = 0; m < M; ++m) dpt[m] = std::exp(G[t * M + m]) * dot(Hv + m * V, dot_, V);
        for (int64_t i = 0; i <= t; ++i) {
          const T a = vdo[t * L + i];
          const T *si = cv.sp(i), *pt = P_(t);
          T* ds2i = &ds2[i * M];
          for (int64_t m = 0; m < M; ++m) {
            const T e = std::exp(G[t * M + m] - G[i * M + m]);
            dpt[m] += a * si[m] * e;
            ds2i[m] += a * pt[m] * e;
          }
        }
      }
      for (int64_t i = 0; i < L; ++i) {
        const T* vi = cv.vp(i);
        T* dvi = dv + tok(sh, u, c0 + i, V);
        std::fill(dvi, dvi + V, T(0));
        for (int64_t t = i; t < L; ++t) {
          const T a = A2[t * L + i];
          const T* dot_ = DO(t);
          for (int64_t vv = 0; vv < V; ++vv) dvi[vv] += a * dot_[vv];
        }
        const T* si = cv.sp(i);
        for (int64_t m = 0; m < M; ++m) {
          w[m] = si[m] * std::exp(GL[m] - G[i * M + m]);
          ds2[i * M + m] += std::exp(GL[m] - G[i * M + m]) * dot(&dHv[m * V], vi, V);
          for (int64_t vv = 0; vv < V; ++vv) dvi[vv] += dHv[m * V + vv] * w[m];
        }
      }
      for (int64_t t = 0; t < L; ++t)
        for (int64_t m = 0; m < M; ++m)
          dGc[t * M + m] += P_(t)[m] * dp[t * M + m] - cv.sp(t)[m] * ds2[t * M + m];
      for (int64_t m = 0; m < M; ++m) dGc[(L - 1) * M + m] += dot(Hv_end + m * V, &dHv[m * V], V);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t vv = 0; vv < V; ++vv) dHv_prev[m * V + vv] = std::exp(GL[m]) * dHv[m * V + vv];
      for (int64_t t = 0; t < L; ++t) {
        const T* dot_ = DO(t);
        for (int64_t m = 0; m < M; ++m) {
          const T a = P_(t)[m] * std::exp(G[t * M + m]);
          for (int64_t vv = 0; vv < V; ++vv) dHv_prev[m * V + vv] += a * dot_[vv];
        }
      }
      // ---- softmax backward: du = p (dp - <p, dp>) ----
      du.assign(L * M, T(0));
      for (int64_t t = 0; t < L; ++t) {
        const T* pt = P_(t);
        const T sdp = dot(pt, &dp[t * M], M);
        for (int64_t m = 0; m < M; ++m) du[t * M + m] = pt[m] * (dp[t * M + m] - sdp);
      }
      // ---- pass 1 backward ----
      Bm.assign(L * L, T(0));  // Bm[t][i] = sum_m s_im e^{G_tm - G_im} du_tm
      ds1.assign(L * M, T(0));
      for (int64_t t = 0; t < L; ++t)
        for (int64_t i = 0; i <= t; ++i) {
          const T* si = cv.sp(i);
          const T a = A1[t * L + i];
          T b = 0;
          for (int64_t m = 0; m < M; ++m) {
            const T e = std::exp(G[t * M + m] - G[i * M + m]) * du[t * M + m];
            b += si[m] * e;
            ds1[i * M + m] += a * e;
          }
          Bm[t * L + i] = b;
        }
      for (int64_t t = 0; t < L; ++t) {
        T* dqt = dq + tok(sh, u, c0 + t, K);
        for (int64_t m = 0; m < M; ++m) tmp[m] = std::exp(G[t * M + m]) * du[t * M + m];
        for (int64_t kk = 0; kk < K; ++kk) dqt[kk] = dot(Hk + kk * M, tmp.data(), M);
        for (int64_t i = 0; i <= t; ++i) {
          const T b = Bm[t * L + i];
          const T* ki = cv.kp(i);
          for (int64_t kk = 0; kk < K; ++kk) dqt[kk] += b * ki[kk];
        }
        for (int64_t kk = 0; kk < K; ++kk) dqt[kk] *= scale;
      }
      for (int64_t i = 0; i < L; ++i) {
        T* dki = dk + tok(sh, u, c0 + i, K);
        std::fill(dki, dki + K, T(0));
        for (int64_t t = i; t < L; ++t) {
          const T b = scale * Bm[t * L + i];
          const T* qt = cv.qp(t);
          for (int64_t kk = 0; kk < K; ++kk) dki[kk] += b * qt[kk];
        }
        const T *si = cv.sp(i), *ki = cv.kp(i);
        for (int64_t m = 0; m < M; ++m) w[m] = si[m] * std::exp(GL[m] - G[i * M + m]);
        for (int64_t kk = 0; kk < K; ++kk) dki[kk] += dot(&dHk[kk * M], w.data(), M);
        for (int64_t m = 0; m < M; ++m) {
          T a = 0;
          for (int64_t kk = 0; kk < K; ++kk) a += dHk[kk * M + m] * ki[kk];
          ds1[i * M + m] += std::exp(GL[m] - G[i * M + m]) * a;
        }
      }
      for (int64_t t = 0; t < L; ++t)
        for (int64_t m = 0; m < M; ++m)
          dGc[t * M + m] += uu[t * M + m] * du[t * M + m] - cv.sp(t)[m] * ds1[t * M + m];
      for (int64_t m = 0; m < M; ++m) {
        T a = 0;
        for (int64_t kk = 0; kk < K; ++kk) a += Hk_end[kk * M + m] * dHk[kk * M + m];
        dGc[(L - 1) * M + m] += a;
      }
      for (int64_t kk = 0; kk < K; ++kk)
        for (int64_t m = 0; m < M; ++m) dHk_prev[kk * M + m] = std::exp(GL[m]) * dHk[kk * M + m];
      for (int64_t t = 0; t < L; ++t) {
        const T* qt = cv.qp(t);
        for (int64_t m = 0; m < M; ++m) tmp[m] = scale * std::exp(G[t * M + m]) * du[t * M + m];
        for (int64_t kk = 0; kk < K; ++kk)
          for (int64_t m = 0; m < M; ++m) dHk_prev[kk * M + m] += qt[kk] * tmp[m];
      }
      // ---- write ds, dg (dg = reverse cumsum of dGc within the chunk) ----
      for (int64_t m = 0; m < M; ++m) w[m] = 0;
      for (int64_t t = L - 1; t >= 0; --t) {
        T* dst = ds + tok(sh, u, c0 + t, M);
        T* dgt = dg + tok(sh, u, c0 + t, M);
        for (int64_t m = 0; m < M; ++m) {
          dst[m] = ds1[t * M + m] + ds2[t * M + m];
          w[m] += dGc[t * M + m];
          dgt[m] = w[m];
        }
      }
      dHk.swap(dHk_prev);
      dHv.swap(dHv_prev);
    }
    if (P.dhk0 != nullptr) std::copy(dHk.begin(), dHk.end(), static_cast<T*>(P.dhk0) + sk);
    if (P.dhv0 != nullptr) std::copy(dHv.begin(), dHv.end(), static_cast<T*>(P.dhv0) + sv);
  });
}

}  // namespace

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat16: return "float16";
  }
  return "unknown";
}

void gsa_chunk_fwd_cpu(const GsaFwdParams& params) {
  check_cpu_dtypes("gsa_chunk_fwd_cpu", params.dtype, params.accum_dtype);
  RAVENSP_CHECK(params.chunk_size > 0, "gsa_chunk_fwd_cpu: chunk_size must be > 0, got ",
                params.chunk_size);
  if (params.dtype == DType::kFloat64) chunk_fwd<double>(params);
  else chunk_fwd<float>(params);
}

void gsa_chunk_bwd_cpu(const GsaBwdParams& params) {
  check_cpu_dtypes("gsa_chunk_bwd_cpu", params.dtype, params.accum_dtype);
  RAVENSP_CHECK(params.chunk_size > 0, "gsa_chunk_bwd_cpu: chunk_size must be > 0, got ",
                params.chunk_size);
  if (params.dtype == DType::kFloat64) chunk_bwd<double>(params);
  else chunk_bwd<float>(params);
}

}  // namespace ravensp::kernels
