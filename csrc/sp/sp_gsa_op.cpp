// ravensp::sp_gsa: gated slot attention on this rank's shard of a sequence split
// over an SP group (DESIGN.md §4), on the split passes of ops/gsa_split.h.
// Forward: end states from a zero start -> one exchange, on a side stream while
// the scores that need no incoming state are computed -> finish with the
// incoming states. Backward: the gradient at each incoming state -> one
// exchange, on the side stream while the intra-chunk gradients and dq are
// computed -> finish with the gradient arriving at each segment's end.
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/gsa_args.h"
#include "ops/gsa_split.h"
#include "ops/op_boundary.h"
#include "ravensp/check.h"
#include "ravensp/ops.h"
#include "ravensp/sp.h"
#include "sp/comm_tensor.h"
#include "sp/gsa_exchange.h"
#include "sp/gsa_plan.h"
#include "sp/side_stream.h"
#include "sp/handshake.h"
#include "sp/upload.h"

namespace ravensp::sp {
namespace {

using at::Tensor;
using OptTensor = std::optional<at::Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kFn = "sp_gsa";

Tensor flat(const Tensor& t) { return t.reshape({1, t.size(0) * t.size(1), t.size(2), t.size(3)}); }

// Everything a call needs, checked once.
struct Call {
  comm::Communicator* comm = nullptr;
  GsaPlan plan;
  at::ScalarType accum;
  Tensor local_cu;  // int64 on the inputs' device
  std::vector<int64_t> cu_global;  // the user's cu_seqlens on the host (empty: not packed)
};

Call prepare(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
             const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu, int64_t group_handle,
             Layout layout, StateExchange mode) {
  Call c;
  c.comm = &group(group_handle);  // an unknown handle fails alike on every rank
  const int P = c.comm->size(), rank = c.comm->rank();
  const int64_t B = q.dim() > 0 ? q.size(0) : 0, L = q.dim() > 1 ? q.size(1) : 0;
  ops::GsaArgs a;
  std::vector<int64_t> cu_host;
  // The checks run inside the handshake, so one rank's bad input raises on all.
  static const std::vector<const char*> kFields = {
      "batch", "local length", "heads", "K", "V", "M", "layout", "exchange", "documents",
      "cu_seqlens checksum"};
  checked_handshake(control_group(group_handle), kFn, q.device(), kFields, [&] {
    a = ops::check_gsa_args(kFn, q, k, v, s, g, std::nullopt, std::nullopt, std::nullopt);
    check_group_memory(kFn, *c.comm, q);
    const int64_t H = q.size(2), K = q.size(3), V = v.size(3), M = s.size(3);
    RAVENSP_CHECK(L % segments_per_rank(layout) == 0, kFn, ": local length ", L,
                  " must be divisible by ", segments_per_rank(layout), " for the ",
                  layout_name(layout), " layout");
    if (cu.has_value() && cu->defined()) {
      RAVENSP_CHECK(B == 1, kFn, ": packed documents (cu_seqlens) need batch size 1, got B=", B);
      RAVENSP_CHECK(cu->dim() == 1 && cu->size(0) >= 2, kFn,
                    ": cu_seqlens must be 1-D [0, ..., global T], got shape ",
                    shape_str(cu->sizes()));
      RAVENSP_CHECK(!(hk0.has_value() && hk0->defined()) && !(hv0.has_value() && hv0->defined()),
                    kFn, ": an initial state with packed documents is ambiguous (which document?); "
                    "pass initial_state without cu_seqlens");
      Tensor h = cu->to(at::kCPU, at::kLong).contiguous();
      cu_host.assign(h.data_ptr<int64_t>(), h.data_ptr<int64_t>() + h.numel());
      RAVENSP_CHECK(cu_host.front() == 0, kFn, ": cu_seqlens[0] must be 0, got ", cu_host.front());
      for (size_t i = 1; i < cu_host.size(); ++i)
        RAVENSP_CHECK(cu_host[i] > cu_host[i - 1], kFn, ": cu_seqlens must be strictly increasing, ",
                      "got cu_seqlens[", i - 1, "]=", cu_host[i - 1], " >= cu_seqlens[", i, "]=",
                      cu_host[i]);
      RAVENSP_CHECK(cu_host.back() == L * P, kFn, ": cu_seqlens must end at the global length ",
                    L * P, " = local length ", L, " x world size ", P, ", got ", cu_host.back());
    }
    for (auto [name, t, want] : {std::tuple<const char*, const OptTensor*, std::vector<int64_t>>{
                                     "initial_state hk0", &hk0, {B, H, K, M}},
                                 {"initial_state hv0", &hv0, {B, H, M, V}}}) {
      if (t->has_value() && (*t)->defined())
        RAVENSP_CHECK((*t)->sizes().vec() == want, kFn, ": ", name, " must be ", shape_str(want),
                      ", got ", shape_str((*t)->sizes()));
    }
    return std::vector<int64_t>{B, L, H, K, V, M, int64_t(layout), int64_t(mode),
                                int64_t(cu_host.size()), checksum(cu_host)};
  });
  c.plan = make_gsa_plan(layout, rank, P, B, L, cu_host);
  c.cu_global = std::move(cu_host);
  c.accum = a.accum;
  c.local_cu = upload(c.plan.local_cu, q.device());
  return c;
}

// One state per local piece, stacked: its segment's state where `at_piece`
// holds for the piece (the incoming state at a segment's first piece, the
// end-state gradient at its last), zero elsewhere (pieces that start or end at a
// document boundary inside the segment).
std::pair<Tensor, Tensor> per_piece(const GsaPlan& plan, const std::vector<SegState>& seg,
                                    bool Piece::*at_piece) {
  std::vector<Tensor> hk, hv;
  for (const Piece& pc : plan.pieces) {
    const SegState& st = seg[pc.local_seg];
    hk.push_back(pc.*at_piece ? st.hk[pc.row] : at::zeros_like(st.hk[pc.row]));
    hv.push_back(pc.*at_piece ? st.hv[pc.row] : at::zeros_like(st.hv[pc.row]));
  }
  return {at::stack(hk).contiguous(), at::stack(hv).contiguous()};
}

const Piece& last_piece(const GsaPlan& plan, int64_t row, int64_t li) {
  for (const Piece& pc : plan.pieces)
    if (pc.row == row && pc.local_seg == li && pc.last_of_segment) return pc;
  RAVENSP_CHECK(false, "sp_gsa: internal error: no last piece for row ", row, " segment ", li);
}

class SpGsaFunction : public torch::autograd::Function<SpGsaFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& s, const Tensor& g, double scale,
                               const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
                               int64_t group_handle, int64_t layout_i, int64_t mode_i,
                               int64_t chunk) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const Layout layout = layout_from_int(layout_i);
    const StateExchange mode = state_exchange_from_int(mode_i);
    Call c = prepare(q, k, v, s, g, hk0, hv0, cu, group_handle, layout, mode);
    const GsaPlan& plan = c.plan;
    const int64_t B = q.size(0), H = q.size(2), M = s.size(3);
    auto split = ops::gsa_fwd_split(flat(q), flat(k), flat(v), flat(s), flat(g), scale,
                                    c.local_cu, plan.local_cu, chunk);
    // Per local segment: the end state from zero of its last piece (per row),
    // and the segment's log decay.
    std::vector<SegState> local(plan.mine.size());
    for (size_t li = 0; li < plan.mine.size(); ++li) {
      std::vector<Tensor> lk, lv, ld;
      const Segment& sg = plan.info(li).seg;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t pi = &last_piece(plan, b, li) - plan.pieces.data();
        lk.push_back(split->end_k()[pi].to(c.accum));
        lv.push_back(split->end_v()[pi].to(c.accum));
        ld.push_back(at::sum(g[b].narrow(0, sg.local_start, sg.length), {0}, false, c.accum));
      }
      local[li] = {at::stack(lk), at::stack(lv), at::stack(ld).reshape({B, H, M})};
    }
    const bool has_h0 = hk0.has_value() && hk0->defined();
    const bool has_h0v = hv0.has_value() && hv0->defined();
    ExchangeFwd ex;
    SideStream side(q.device());
    side.run([&] {
      ex = exchange_forward(*c.comm, plan, mode, local, has_h0 ? *hk0 : Tensor(),
                            has_h0v ? *hv0 : Tensor());
    });
    split->overlap();
    std::vector<Tensor> produced;
    for (const SegState& st : ex.incoming) produced.insert(produced.end(), {st.hk, st.hv});
    side.join(produced);
    auto [h0k, h0v] = per_piece(plan, ex.incoming, &Piece::first_of_segment);
    auto [o, p, lse] = split->finish(h0k, h0v);
    std::vector<Tensor> logd;
    for (const SegState& st : local) logd.push_back(st.logd);
    ctx->save_for_backward({q, k, v, s, g, p, h0k, h0v, c.local_cu, at::stack(logd), lse});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["group"] = group_handle;
    ctx->saved_data["layout"] = layout_i;
    ctx->saved_data["mode"] = mode_i;
    ctx->saved_data["cu"] = c.cu_global.empty() ? c10::IValue()
                                                : c10::IValue(at::tensor(c.cu_global, at::kLong));
    ctx->saved_data["hk0_dtype"] = has_h0 ? int64_t(hk0->scalar_type()) : int64_t(-1);
    ctx->saved_data["hv0_dtype"] = has_h0v ? int64_t(hv0->scalar_type()) : int64_t(-1);
    return {o.reshape(v.sizes())};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    const Tensor &q = sv[0], &k = sv[1], &v = sv[2], &s = sv[3], &g = sv[4], &p = sv[5],
                 &h0k = sv[6], &h0v = sv[7], &local_cu = sv[8], &logd_all = sv[9],
                 &lse = sv[10];
    comm::Communicator& cm = group(ctx->saved_data["group"].toInt());
    const Layout layout = layout_from_int(ctx->saved_data["layout"].toInt());
    const StateExchange mode = state_exchange_from_int(ctx->saved_data["mode"].toInt());
    std::vector<int64_t> cu_host;
    if (!ctx->saved_data["cu"].isNone()) {
      Tensor cu = ctx->saved_data["cu"].toTensor();
      cu_host.assign(cu.data_ptr<int64_t>(), cu.data_ptr<int64_t>() + cu.numel());
    }
    const int64_t B = q.size(0), L = q.size(1);
    GsaPlan plan = make_gsa_plan(layout, cm.rank(), cm.size(), B, L, cu_host);
    Tensor grad_o = grads[0].defined() ? grads[0] : at::zeros_like(v);
    auto split = ops::gsa_bwd_split(flat(grad_o.contiguous()), flat(q), flat(k), flat(v),
                                    flat(s), flat(g), p, lse, ctx->saved_data["scale"].toDouble(),
                                    h0k, h0v, local_cu, plan.local_cu,
                                    ctx->saved_data["chunk"].toInt());
    const Tensor &dh0k = split->grad_in_k(), &dh0v = split->grad_in_v();
    // Gradients at each local segment's incoming state: its first piece's dh0.
    const int64_t nloc = plan.mine.size();
    std::vector<SegState> grad_in(nloc);
    std::vector<Tensor> logd(nloc);
    for (int64_t li = 0; li < nloc; ++li) {
      std::vector<Tensor> gk, gv;
      for (int64_t b = 0; b < B; ++b)
        for (size_t i = 0; i < plan.pieces.size(); ++i) {
          const Piece& pc = plan.pieces[i];
          if (pc.row != b || pc.local_seg != li || !pc.first_of_segment) continue;
          const bool takes = plan.info(li).flows_in;
          gk.push_back(takes ? dh0k[i] : at::zeros_like(dh0k[i]));
          gv.push_back(takes ? dh0v[i] : at::zeros_like(dh0v[i]));
        }
      grad_in[li] = {at::stack(gk), at::stack(gv), {}};
      logd[li] = logd_all[li];
    }
    ExchangeBwd ex;
    SideStream side(q.device());
    side.run([&] { ex = exchange_backward(cm, plan, mode, grad_in, logd); });
    split->overlap();
    std::vector<Tensor> produced{ex.grad_h0k, ex.grad_h0v};
    for (const SegState& st : ex.grad_end) produced.insert(produced.end(), {st.hk, st.hv});
    side.join(produced);
    // Each segment's end-state gradient enters at its last piece's end.
    auto [end_k, end_v] = per_piece(plan, ex.grad_end, &Piece::last_of_segment);
    auto [dq, dk, dv, ds, dg] = split->finish(end_k, end_v);
    dq = dq.reshape(q.sizes());
    dk = dk.reshape(k.sizes());
    dv = dv.reshape(v.sizes());
    ds = ds.reshape(s.sizes());
    dg = dg.reshape(g.sizes());
    Tensor gh0k, gh0v;
    const int64_t hk_dt = ctx->saved_data["hk0_dtype"].toInt(),
                  hv_dt = ctx->saved_data["hv0_dtype"].toInt();
    if (hk_dt >= 0 && ex.grad_h0k.defined()) gh0k = ex.grad_h0k.to(at::ScalarType(hk_dt));
    if (hv_dt >= 0 && ex.grad_h0v.defined()) gh0v = ex.grad_h0v.to(at::ScalarType(hv_dt));
    // A rank that passed an initial state but does not own segment 0 gets zeros.
    if (hk_dt >= 0 && !gh0k.defined()) gh0k = at::zeros(ex.grad_end[0].hk.sizes(), q.options().dtype(at::ScalarType(hk_dt)));
    if (hv_dt >= 0 && !gh0v.defined()) gh0v = at::zeros(ex.grad_end[0].hv.sizes(), q.options().dtype(at::ScalarType(hv_dt)));
    return {dq, dk, dv, ds, dg, Tensor(), gh0k, gh0v, Tensor(), Tensor(), Tensor(), Tensor(),
            Tensor()};
  }
};

Tensor sp_gsa_autograd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s,
                       const Tensor& g, double scale, const OptTensor& hk0, const OptTensor& hv0,
                       const OptTensor& cu, int64_t group_handle, int64_t layout, int64_t mode,
                       int64_t chunk) {
  return SpGsaFunction::apply(q, k, v, s, g, scale, hk0, hv0, cu, group_handle, layout, mode,
                              chunk)[0];
}

}  // namespace

Tensor sp_gsa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& s, const Tensor& g,
              double scale, const OptTensor& hk0, const OptTensor& hv0, const OptTensor& cu,
              int64_t group_handle, Layout layout, StateExchange exchange, int64_t chunk_size) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ravensp::sp_gsa", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                     const Tensor&, double, const OptTensor&, const OptTensor&,
                                     const OptTensor&, int64_t, int64_t, int64_t, int64_t)>();
  return op.call(q, k, v, s, g, scale, hk0, hv0, cu, group_handle, int64_t(layout),
                 int64_t(exchange), chunk_size);
}

TORCH_LIBRARY_FRAGMENT(ravensp, m) {
  m.def("sp_gsa(Tensor q, Tensor k, Tensor v, Tensor s, Tensor g, float scale, Tensor? hk0, "
        "Tensor? hv0, Tensor? cu_seqlens, int group, int layout, int exchange=0, "
        "int chunk_size=64) -> Tensor");
}

// The op always runs through SpGsaFunction (it must exchange states even when no
// gradient is needed); below autograd the function's forward is the whole op.
TORCH_LIBRARY_IMPL(ravensp, Autograd, m) { m.impl("sp_gsa", RAVENSP_OP(sp_gsa_autograd)); }
TORCH_LIBRARY_IMPL(ravensp, CompositeExplicitAutograd, m) { m.impl("sp_gsa", RAVENSP_OP(sp_gsa_autograd)); }

}  // namespace ravensp::sp
