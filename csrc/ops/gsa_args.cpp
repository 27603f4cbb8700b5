// Implementation of the GSA argument checks (see gsa_args.h). Messages name the
// argument, the expected and the actual value, as users act on them.
#include "ops/gsa_args.h"

#include "ravensp/check.h"

namespace ravensp::ops {
namespace {

bool is_supported_dtype(at::ScalarType st) {
  return st == at::kFloat || st == at::kDouble || st == at::kBFloat16 || st == at::kHalf;
}

void check_4d(const char* fn, const char* name, const at::Tensor& t, const char* dims) {
  RAVENSP_CHECK(t.defined(), fn, ": ", name, " is undefined");
  RAVENSP_CHECK(t.dim() == 4, fn, ": ", name, " must have 4 dims ", dims, ", got ",
                shape_str(t.sizes()));
}

void check_same(const char* fn, const char* name, const at::Tensor& t, const at::Tensor& q,
                int64_t B, int64_t T, int64_t H) {
  RAVENSP_CHECK(t.size(0) == B && t.size(1) == T && t.size(2) == H, fn, ": ", name,
                " must match q in [B, T, H] = ", shape_str(std::vector<int64_t>{B, T, H}),
                ", got ", shape_str(t.sizes()));
  RAVENSP_CHECK(t.scalar_type() == q.scalar_type(), fn, ": ", name, " must have q's dtype ",
                q.scalar_type(), ", got ", t.scalar_type());
  RAVENSP_CHECK(t.device() == q.device(), fn, ": ", name, " must be on q's device ", q.device(),
                ", got ", t.device());
}

void check_state(const char* fn, const char* name, const std::optional<at::Tensor>& t,
                 const std::vector<int64_t>& want, const at::Tensor& q) {
  if (!t.has_value() || !t->defined()) return;
  RAVENSP_CHECK(t->sizes().vec() == want, fn, ": ", name, " must be ", shape_str(want),
                " [N, H, ...] with N the number of sequences, got ", shape_str(t->sizes()));
  RAVENSP_CHECK(at::isFloatingType(t->scalar_type()), fn, ": ", name,
                " must be floating point, got ", t->scalar_type());
  RAVENSP_CHECK(t->device() == q.device(), fn, ": ", name, " must be on q's device ", q.device(),
                ", got ", t->device());
}

}  // namespace

kernels::DType to_kernel_dtype(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return kernels::DType::kFloat32;
    case at::kDouble: return kernels::DType::kFloat64;
    case at::kBFloat16: return kernels::DType::kBFloat16;
    case at::kHalf: return kernels::DType::kFloat16;
    default: break;
  }
  RAVENSP_CHECK(false, "unsupported dtype ", st, "; supported: float32, float64, bfloat16, float16");
}

GsaArgs check_gsa_args(const char* fn, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& s, const at::Tensor& g,
                       const std::optional<at::Tensor>& hk0, const std::optional<at::Tensor>& hv0,
                       const std::optional<at::Tensor>& cu_seqlens,
                       const std::vector<int64_t>* cu_seqlens_host) {
  check_4d(fn, "q", q, "[B, T, H, K]");
  check_4d(fn, "k", k, "[B, T, H, K]");
  check_4d(fn, "v", v, "[B, T, H, V]");
  check_4d(fn, "s", s, "[B, T, H, M]");
  check_4d(fn, "g", g, "[B, T, H, M]");
  RAVENSP_CHECK(is_supported_dtype(q.scalar_type()), fn, ": q dtype must be one of float32, "
                "float64, bfloat16, float16, got ", q.scalar_type());
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3);
  const int64_t V = v.size(3), M = s.size(3);
  RAVENSP_CHECK(B > 0 && T > 0 && H > 0 && K > 0, fn, ": q must be non-empty, got ",
                shape_str(q.sizes()));
  check_same(fn, "k", k, q, B, T, H);
  check_same(fn, "v", v, q, B, T, H);
  check_same(fn, "s", s, q, B, T, H);
  check_same(fn, "g", g, q, B, T, H);
  RAVENSP_CHECK(k.size(3) == K, fn, ": k head dim must equal q's K=", K, ", got ", k.size(3));
  RAVENSP_CHECK(g.size(3) == M, fn, ": g must have s's slot count M=", M, ", got ", g.size(3));
  RAVENSP_CHECK(V > 0 && M > 0, fn, ": v and s must be non-empty, got V=", V, ", M=", M);

  GsaArgs a;
  a.accum = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  a.shape.batch = B;
  a.shape.seqlen = T;
  a.shape.heads = H;
  a.shape.head_k = K;
  a.shape.head_v = V;
  a.shape.slots = M;
  a.shape.num_seqs = B;
  if (cu_seqlens.has_value() && cu_seqlens->defined()) {
    const at::Tensor& cu = *cu_seqlens;
    RAVENSP_CHECK(cu.dim() == 1 && cu.size(0) >= 2, fn,
                  ": cu_seqlens must be 1-D with at least 2 entries [0, ..., T], got shape ",
                  shape_str(cu.sizes()));
    RAVENSP_CHECK(cu.scalar_type() == at::kLong || cu.scalar_type() == at::kInt, fn,
                  ": cu_seqlens must be int32 or int64, got ", cu.scalar_type());
    RAVENSP_CHECK(cu.device() == q.device(), fn, ": cu_seqlens must be on q's device ",
                  q.device(), ", got ", cu.device());
    RAVENSP_CHECK(B == 1, fn, ": packed sequences (cu_seqlens) need batch size 1, got B=", B);
    if (cu_seqlens_host != nullptr) {
      RAVENSP_CHECK(static_cast<int64_t>(cu_seqlens_host->size()) == cu.size(0), fn,
                    ": the host copy of cu_seqlens has ", cu_seqlens_host->size(),
                    " entries, the tensor ", cu.size(0));
      a.cu_host = *cu_seqlens_host;
    } else {
      at::Tensor host = cu.to(at::kCPU, at::kLong).contiguous();  // waits for the device
      a.cu_host.assign(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
    }
    RAVENSP_CHECK(a.cu_host.front() == 0, fn, ": cu_seqlens[0] must be 0, got ", a.cu_host.front());
    for (size_t i = 1; i < a.cu_host.size(); ++i)
      RAVENSP_CHECK(a.cu_host[i] > a.cu_host[i - 1], fn,
                    ": cu_seqlens must be strictly increasing, got cu_seqlens[", i - 1,
                    "]=", a.cu_host[i - 1], " >= cu_seqlens[", i, "]=", a.cu_host[i]);
    RAVENSP_CHECK(a.cu_host.back() == T, fn, ": cu_seqlens must end at T=", T, ", got ",
                  a.cu_host.back());
    a.cu_dev = cu.to(at::kLong).contiguous();
    a.shape.num_seqs = static_cast<int64_t>(a.cu_host.size()) - 1;
  }
  check_state(fn, "initial_state hk0", hk0, hk_shape(a), q);
  check_state(fn, "initial_state hv0", hv0, hv_shape(a), q);
  return a;
}

void check_like(const char* fn, const char* name, const at::Tensor& t, at::IntArrayRef shape,
                const at::Tensor& ref) {
  RAVENSP_CHECK(t.defined(), fn, ": ", name, " is undefined");
  RAVENSP_CHECK(t.sizes() == shape, fn, ": ", name, " must be ", shape_str(shape), ", got ",
                shape_str(t.sizes()));
  RAVENSP_CHECK(t.device() == ref.device(), fn, ": ", name, " must be on ", ref.device(),
                ", got ", t.device());
}

std::vector<int64_t> hk_shape(const GsaArgs& a) {
  return {a.shape.num_seqs, a.shape.heads, a.shape.head_k, a.shape.slots};
}

std::vector<int64_t> hv_shape(const GsaArgs& a) {
  return {a.shape.num_seqs, a.shape.heads, a.shape.slots, a.shape.head_v};
}

at::Tensor state_or_undef(const std::optional<at::Tensor>& t, at::ScalarType accum) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  return t->to(accum).contiguous();
}

}  // namespace ravensp::ops
