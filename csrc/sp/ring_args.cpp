// Ring attention's boundary: local argument checks, then the SP handshake
// (sp/handshake.h: shape fields, a hash of cu_seqlens and the local error
// message) so a bad input on any rank raises on all ranks instead of leaving
// the others blocked in a transfer.
#include "ring_args.h"

#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "ravensp/check.h"
#include "ravensp/ring_attention.h"
#include "ring_exchange.h"
#include "sp/handshake.h"

namespace ravensp::sp::ring {
namespace {

bool float_dtype(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

std::string dev(const at::Tensor& t) { return t.device().str(); }

void check_local(const char* op, Config& c, const at::Tensor& q, const at::Tensor& k,
                 const at::Tensor& v, const std::optional<at::Tensor>& cu_seqlens,
                 int64_t layout, const at::Tensor* grad_o, const at::Tensor* o,
                 const at::Tensor* lse) {
  RAVENSP_CHECK(q.dim() == 4, op, ": q must have 4 dims [B, L, H, D], got ", shape_str(q.sizes()));
  RAVENSP_CHECK(k.dim() == 4, op, ": k must have 4 dims [B, L, Hkv, D], got ", shape_str(k.sizes()));
  RAVENSP_CHECK(k.sizes() == v.sizes(), op, ": v must have k's shape ", shape_str(k.sizes()),
                ", got ", shape_str(v.sizes()));
  c.B = q.size(0), c.L = q.size(1), c.H = q.size(2), c.D = q.size(3), c.Hkv = k.size(2);
  RAVENSP_CHECK(c.B > 0 && c.L > 0 && c.H > 0 && c.D > 0, op, ": q must be non-empty, got ",
                shape_str(q.sizes()));
  RAVENSP_CHECK(k.size(0) == c.B && k.size(1) == c.L && k.size(3) == c.D, op,
                ": k must be [B, L, Hkv, D] = [", c.B, ", ", c.L, ", Hkv, ", c.D,
                "] to match q ", shape_str(q.sizes()), ", got ", shape_str(k.sizes()));
  RAVENSP_CHECK(c.Hkv > 0 && c.H % c.Hkv == 0, op, ": q's heads H=", c.H,
                " must be a multiple of k/v's heads Hkv=", c.Hkv);
  RAVENSP_CHECK(float_dtype(q.scalar_type()), op,
                ": q must be float16, bfloat16, float32 or float64, got ", q.scalar_type());
  RAVENSP_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op,
                ": q, k, v must share one dtype, got ", q.scalar_type(), ", ", k.scalar_type(),
                ", ", v.scalar_type());
  RAVENSP_CHECK(k.device() == q.device() && v.device() == q.device(), op,
                ": q, k, v must be on one device, got ", dev(q), ", ", dev(k), ", ", dev(v));
  if (c.comm != nullptr) {
    const bool cuda_comm = c.comm->memory() == comm::DeviceType::kCUDA;
    RAVENSP_CHECK(q.is_cuda() == cuda_comm, op, ": q is on ", dev(q), " but SP group ",
                  c.comm->who(), " moves ", cuda_comm ? "CUDA" : "host", " memory");
  }
  RAVENSP_CHECK(layout == 0 || layout == 1, op, ": layout must be 0 (contiguous) or 1 (zigzag), got ",
                layout);
  c.layout = static_cast<Layout>(layout);
  RAVENSP_CHECK(c.L % segments_per_rank(c.layout) == 0, op, ": local length L=", c.L,
                " must be divisible by ", segments_per_rank(c.layout), " for the ",
                layout_name(c.layout), " layout");
  RAVENSP_CHECK(std::isfinite(c.scale), op, ": scale must be finite, got ", c.scale);
  const int64_t T = c.L * c.world;
  if (cu_seqlens.has_value() && cu_seqlens->defined()) {
    const at::Tensor& cu = *cu_seqlens;
    RAVENSP_CHECK(c.B == 1, op, ": cu_seqlens needs a packed batch B == 1, got B=", c.B);
    RAVENSP_CHECK(cu.dim() == 1 && cu.numel() >= 2, op,
                  ": cu_seqlens must be 1-D with at least 2 offsets, got ", shape_str(cu.sizes()));
    RAVENSP_CHECK(cu.scalar_type() == at::kInt || cu.scalar_type() == at::kLong, op,
                  ": cu_seqlens must be int32 or int64, got ", cu.scalar_type());
    at::Tensor h = cu.to(at::kCPU, at::kLong).contiguous();
    c.cu.assign(h.data_ptr<int64_t>(), h.data_ptr<int64_t>() + h.numel());
    RAVENSP_CHECK(c.cu.front() == 0 && c.cu.back() == T, op,
                  ": cu_seqlens must be GLOBAL offsets from 0 to P*L = ", T, ", got ",
                  c.cu.front(), " .. ", c.cu.back());
    for (size_t i = 1; i < c.cu.size(); ++i)
      RAVENSP_CHECK(c.cu[i] >= c.cu[i - 1], op, ": cu_seqlens must be non-decreasing, got ",
                    c.cu[i - 1], " then ", c.cu[i], " at index ", i);
  }
  auto same = [&](const at::Tensor* t, const char* name, c10::IntArrayRef want) {
    if (t == nullptr) return;
    RAVENSP_CHECK(t->sizes() == want, op, ": ", name, " must be ", shape_str(want), ", got ",
                  shape_str(t->sizes()));
    RAVENSP_CHECK(t->device() == q.device(), op, ": ", name, " must be on ", dev(q), ", got ",
                  dev(*t));
  };
  same(grad_o, "grad_o", q.sizes());
  same(o, "o", q.sizes());
  same(lse, "lse", {c.B, c.H, c.L});
}

// What every rank must agree on, for the shared handshake (sp/handshake.h).
const std::vector<const char*> kFields = {"B", "L", "H", "Hkv", "D", "dtype", "device type",
                                          "causal", "window", "layout", "scale",
                                          "cu_seqlens length", "cu_seqlens (hash)"};

std::vector<int64_t> values_of(const Config& c, const at::Tensor& q) {
  int64_t scale_bits;
  std::memcpy(&scale_bits, &c.scale, 8);
  return {c.B, c.L, c.H, c.Hkv, c.D, static_cast<int64_t>(q.scalar_type()),
          static_cast<int64_t>(q.device().type()), c.causal, c.window,
          static_cast<int64_t>(c.layout), scale_bits, static_cast<int64_t>(c.cu.size()),
          checksum(c.cu)};
}

}  // namespace

Config make_config(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   double scale, bool causal, int64_t window,
                   const std::optional<at::Tensor>& cu_seqlens, int64_t group, int64_t layout,
                   const at::Tensor* grad_o, const at::Tensor* o, const at::Tensor* lse) {
  Config c;
  if (group != kNoGroup) {
    c.comm = &sp::group(group);  // an unknown handle fails alike on every rank
    c.rank = c.comm->rank();
    c.world = c.comm->size();
  }
  c.scale = scale;
  c.causal = causal;
  c.window = window > 0 ? window : 0;
  if (c.comm == nullptr) {
    check_local(op, c, q, k, v, cu_seqlens, layout, grad_o, o, lse);
  } else {
    checked_handshake(sp::control_group(group), op, q.device(), kFields, [&] {
      check_local(op, c, q, k, v, cu_seqlens, layout, grad_o, o, lse);
      return values_of(c, q);
    });
  }
  c.acc_dtype = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return c;
}

}  // namespace ravensp::sp::ring
