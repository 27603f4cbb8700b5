// CPU token-by-token GSA (the fused recurrent form): decoding and short inputs.
//
// Forward keeps the two states and updates them per token. Backward walks the
// tokens in reverse; it needs the states before and after every token, so it
// recomputes them segment by segment from checkpoints taken every kSegment
// tokens (memory kSegment * (K*M + M*V) per unit instead of T * (K*M + M*V)).
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

constexpr int64_t kSegment = 64;

template <typename T>
struct Step {
  const GsaShape& sh;
  const Unit& u;
  const T *q, *k, *v, *s, *g;
  T scale;

  // One token: Hk, Hv advance in place; u_out, p_out [M] receive the scores.
  void forward(int64_t t, T* Hk, T* Hv, T* u_out, T* p_out) const {
    const int64_t K = sh.head_k, V = sh.head_v, M = sh.slots;
    const T *qt = q + tok(sh, u, t, K), *kt = k + tok(sh, u, t, K), *vt = v + tok(sh, u, t, V),
            *st = s + tok(sh, u, t, M), *gt = g + tok(sh, u, t, M);
    for (int64_t m = 0; m < M; ++m) u_out[m] = 0;
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t m = 0; m < M; ++m) {
        T& h = Hk[kk * M + m];
        h = h * std::exp(gt[m]) + kt[kk] * st[m];
        u_out[m] += scale * qt[kk] * h;
      }
    T mx = u_out[0];
    for (int64_t m = 1; m < M; ++m) mx = std::max(mx, u_out[m]);
    T sum = 0;
    for (int64_t m = 0; m < M; ++m) sum += (p_out[m] = std::exp(u_out[m] - mx));
    for (int64_t m = 0; m < M; ++m) p_out[m] /= sum;
    for (int64_t m = 0; m < M; ++m) {
      const T e = std::exp(gt[m]);
      for (int64_t vv = 0; vv < V; ++vv) Hv[m * V + vv] = e * Hv[m * V + vv] + st[m] * vt[vv];
    }
  }
};

template <typename T>
void recurrent_fwd(const GsaFwdParams& P) {
  const GsaShape& sh = P.shape;
  const int64_t K = sh.head_k, V = sh.head_v, M = sh.slots;
  gsa_detail::for_each_unit(sh, [&](const Unit& u) {
    Step<T> st{sh, u, static_cast<const T*>(P.q), static_cast<const T*>(P.k),
               static_cast<const T*>(P.v), static_cast<const T*>(P.s),
               static_cast<const T*>(P.g), static_cast<T>(P.scale)};
    const int64_t sk = (u.n * sh.heads + u.h) * K * M, sv = (u.n * sh.heads + u.h) * M * V;
    std::vector<T> Hk(K * M), Hv(M * V), uu(M), pp(M);
    load_state<T>(P.hk0, sk, K * M, Hk.data());
    load_state<T>(P.hv0, sv, M * V, Hv.data());
    for (int64_t t = u.bos; t < u.eos; ++t) {
      st.forward(t, Hk.data(), Hv.data(), uu.data(), pp.data());
      T* ot = static_cast<T*>(P.o) + tok(sh, u, t, V);
      for (int64_t vv = 0; vv < V; ++vv) {
        T a = 0;
        for (int64_t m = 0; m < M; ++m) a += Hv[m * V + vv] * pp[m];
        ot[vv] = a;
      }
      if (P.p != nullptr) std::copy(pp.begin(), pp.end(), static_cast<T*>(P.p) + tok(sh, u, t, M));
    }
    if (P.hkT != nullptr) std::copy(Hk.begin(), Hk.end(), static_cast<T*>(P.hkT) + sk);
    if (P.hvT != nullptr) std::copy(Hv.begin(), Hv.end(), static_cast<T*>(P.hvT) + sv);
  });
}

template <typename T>
void recurrent_bwd(const GsaBwdParams& P) {
  const GsaShape& sh = P.shape;
  const int64_t K = sh.head_k, V = sh.head_v, M = sh.slots, KM = K * M, MV = M * V;
  const T scale = static_cast<T>(P.scale);
  gsa_detail::for_each_unit(sh, [&](const Unit& u) {
    Step<T> st{sh, u, static_cast<const T*>(P.q), static_cast<const T*>(P.k),
               static_cast<const T*>(P.v), static_cast<const T*>(P.s),
               static_cast<const T*>(P.g), scale};
    const int64_t sk = (u.n * sh.heads + u.h) * KM, sv = (u.n * sh.heads + u.h) * MV;
    const int64_t len = u.eos - u.bos, nseg = (len + kSegment - 1) / kSegment;
    // Checkpoints: the states entering each segment.
    std::vector<T> ckk(std::max<int64_t>(nseg, 1) * KM), ckv(std::max<int64_t>(nseg, 1) * MV);
    std::vector<T> Hk(KM), Hv(MV), uu(M), pp(M);
    load_state<T>(P.hk0, sk, KM, Hk.data());
    load_state<T>(P.hv0, sv, MV, Hv.data());
    for (int64_t sgi = 0; sgi < nseg; ++sgi) {
      std::copy(Hk.begin(), Hk.end(), ckk.begin() + sgi * KM);
      std::copy(Hv.begin(), Hv.end(), ckv.begin() + sgi * MV);
      const int64_t t1 = std::min(u.eos, u.bos + (sgi + 1) * kSegment);
      for (int64_t t = u.bos + sgi * kSegment; t < t1; ++t)
        st.forward(t, Hk.data(), Hv.data(), uu.data(), pp.data());
    }
    std::vector<T> dHk(KM), dHv(MV);
    load_state<T>(P.dhkT, sk, KM, dHk.data());
    load_state<T>(P.dhvT, sv, MV, dHv.data());
    // Per segment: states[j] is the state after token j of the segment; states
    // before the segment's first token are the checkpoint.
    std::vector<T> segk((kSegment + 1) * KM), segv((kSegment + 1) * MV), segp(kSegment * M),
        dp(M), du(M);
    for (int64_t sgi = nseg - 1; sgi >= 0; --sgi) {
      const int64_t t0 = u.bos + sgi * kSegment, t1 = std::min(u.eos, t0 + kSegment);
      std::copy(ckk.begin() + sgi * KM, ckk.begin() + (sgi + 1) * KM, segk.begin());
      std::copy(ckv.begin() + sgi * MV, ckv.begin() + (sgi + 1) * MV, segv.begin());
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t j = t - t0;
        std::copy(segk.begin() + j * KM, segk.begin() + (j + 1) * KM, segk.begin() + (j + 1) * KM);
        std::copy(segv.begin() + j * MV, segv.begin() + (j + 1) * MV, segv.begin() + (j + 1) * MV);
        st.forward(t, &segk[(j + 1) * KM], &segv[(j + 1) * MV], uu.data(), &segp[j * M]);
      }
      for (int64_t t = t1 - 1; t >= t0; --t) {
        const int64_t j = t - t0;
        const T *Hk_t = &segk[(j + 1) * KM], *Hv_t = &segv[(j + 1) * MV];
        const T *Hk_p = &segk[j * KM], *Hv_p = &segv[j * MV], *pt = &segp[j * M];
        const T *qt = st.q + tok(sh, u, t, K), *kt = st.k + tok(sh, u, t, K),
                *vt = st.v + tok(sh, u, t, V), *s_t = st.s + tok(sh, u, t, M),
                *gt = st.g + tok(sh, u, t, M);
        const T* dot_ = static_cast<const T*>(P.d_o) + tok(sh, u, t, V);
        T* dqt = static_cast<T*>(P.dq) + tok(sh, u, t, K);
        T* dkt = static_cast<T*>(P.dk) + tok(sh, u, t, K);
        T* dvt = static_cast<T*>(P.dv) + tok(sh, u, t, V);
        T* dst = static_cast<T*>(P.ds) + tok(sh, u, t, M);
        T* dgt = static_cast<T*>(P.dg) + tok(sh, u, t, M);
        // o_t = Hv_t^T p_t
        T sdp = 0;
        for (int64_t m = 0; m < M; ++m) {
          T a = 0;
          for (int64_t vv = 0; vv < V; ++vv) {
            a += Hv_t[m * V + vv] * dot_[vv];
            dHv[m * V + vv] += pt[m] * dot_[vv];
          }
          dp[m] = a;
          sdp += pt[m] * a;
        }
        for (int64_t m = 0; m < M; ++m) du[m] = pt[m] * (dp[m] - sdp);
        // u_t = scale Hk_t^T q_t
        for (int64_t kk = 0; kk < K; ++kk) {
          T a = 0;
          for (int64_t m = 0; m < M; ++m) {
            a += Hk_t[kk * M + m] * du[m];
            dHk[kk * M + m] += scale * qt[kk] * du[m];
          }
          dqt[kk] = scale * a;
        }
        // Hv_t = diag(e^g) Hv_{t-1} + s v^T
        for (int64_t vv = 0; vv < V; ++vv) dvt[vv] = 0;
        for (int64_t m = 0; m < M; ++m) {
          const T e = std::exp(gt[m]);
          T dsm = 0, dgm = 0;
          for (int64_t vv = 0; vv < V; ++vv) {
            const T d = dHv[m * V + vv];
            dsm += d * vt[vv];
            dvt[vv] += d * s_t[m];
            dgm += Hv_p[m * V + vv] * d;
            dHv[m * V + vv] = e * d;
          }
          dst[m] = dsm;
          dgt[m] = e * dgm;
        }
        // Hk_t = Hk_{t-1} diag(e^g) + k s^T
        for (int64_t kk = 0; kk < K; ++kk) dkt[kk] = 0;
        for (int64_t m = 0; m < M; ++m) {
          const T e = std::exp(gt[m]);
          T dsm = 0, dgm = 0;
          for (int64_t kk = 0; kk < K; ++kk) {
            const T d = dHk[kk * M + m];
            dsm += d * kt[kk];
            dkt[kk] += d * s_t[m];
            dgm += Hk_p[kk * M + m] * d;
            dHk[kk * M + m] = e * d;
          }
          dst[m] += dsm;
          dgt[m] += e * dgm;
        }
      }
    }
    if (P.dhk0 != nullptr) std::copy(dHk.begin(), dHk.end(), static_cast<T*>(P.dhk0) + sk);
    if (P.dhv0 != nullptr) std::copy(dHv.begin(), dHv.end(), static_cast<T*>(P.dhv0) + sv);
  });
}

}  // namespace

void gsa_recurrent_fwd_cpu(const GsaFwdParams& params) {
  check_cpu_dtypes("gsa_recurrent_fwd_cpu", params.dtype, params.accum_dtype);
  if (params.dtype == DType::kFloat64) recurrent_fwd<double>(params);
  else recurrent_fwd<float>(params);
}

void gsa_recurrent_bwd_cpu(const GsaBwdParams& params) {
  check_cpu_dtypes("gsa_recurrent_bwd_cpu", params.dtype, params.accum_dtype);
  if (params.dtype == DType::kFloat64) recurrent_bwd<double>(params);
  else recurrent_bwd<float>(params);
}

}  // namespace ravensp::kernels
