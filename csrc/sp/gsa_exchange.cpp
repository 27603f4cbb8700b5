// LASP-2 and LASP-1 state exchanges (see gsa_exchange.h). Every rank walks the
// segments in sequence order; only the transport differs.
#include "sp/gsa_exchange.h"

#include "ravensp/check.h"
#include "sp/comm_tensor.h"

namespace ravensp::sp {
namespace {

int64_t local_index(const Segment& s) { return s.local_start / s.length; }

// Decay per slot applied to a state: hk [B,H,K,M] scales its last dim, hv
// [B,H,M,V] its third.
SegState decayed(const SegState& st, const at::Tensor& logd) {
  at::Tensor d = logd.exp();
  return {st.hk * d.unsqueeze(2), st.hv * d.unsqueeze(3), at::Tensor()};
}

SegState add(const SegState& a, const SegState& b) { return {a.hk + b.hk, a.hv + b.hv, {}}; }
SegState zeros_like(const SegState& a) { return {at::zeros_like(a.hk), at::zeros_like(a.hv), {}}; }

// [B, X] rows: hk, hv (and logd when given) flattened per batch row.
at::Tensor pack(const SegState& st, bool with_logd) {
  const int64_t B = st.hk.size(0);
  std::vector<at::Tensor> parts{st.hk.reshape({B, -1}), st.hv.reshape({B, -1})};
  if (with_logd) parts.push_back(st.logd.reshape({B, -1}));
  return at::cat(parts, 1);
}

SegState unpack(const at::Tensor& row, const SegState& like, bool with_logd) {
  const int64_t nk = like.hk[0].numel(), nv = like.hv[0].numel();
  SegState st;
  st.hk = row.narrow(1, 0, nk).reshape(like.hk.sizes());
  st.hv = row.narrow(1, nk, nv).reshape(like.hv.sizes());
  if (with_logd) st.logd = row.narrow(1, nk + nv, like.logd[0].numel()).reshape(like.logd.sizes());
  return st;
}

void p2p(comm::Communicator& c, const at::Tensor& t, int peer, bool send) {
  c.send_recv({send ? comm::send_op(to_buffer(t), peer) : comm::recv_op(to_buffer(t), peer)});
}

// Every segment's gathered row in sequence order, split into its key and value
// states [n, B, H, K, M] / [n, B, H, M, V] and its log decays [n, B, H, M] in
// fp64 (the combine's prefix sums), from the all-gather's [P, nloc, B, X] buffer.
struct Gathered {
  at::Tensor hk, hv, logd;
};

Gathered in_sequence_order(const GsaPlan& plan, const at::Tensor& recv, const at::Tensor& like_k,
                           const at::Tensor& like_v, at::IntArrayRef logd_sizes) {
  std::vector<at::Tensor> rows;
  for (const SegmentInfo& info : plan.all) rows.push_back(recv[info.seg.rank][local_index(info.seg)]);
  const at::Tensor all = at::stack(rows);  // [n, B, X]
  const int64_t n = all.size(0), nk = like_k[0].numel(), nv = like_v[0].numel();
  auto shaped = [n](const at::Tensor& t, at::IntArrayRef one) {
    std::vector<int64_t> sz{n};
    sz.insert(sz.end(), one.begin(), one.end());
    return t.reshape(sz);
  };
  return {shaped(all.narrow(2, 0, nk), like_k.sizes()), shaped(all.narrow(2, nk, nv), like_v.sizes()),
          shaped(all.narrow(2, nk + nv, all.size(2) - nk - nv), logd_sizes).to(at::kDouble)};
}

// sum_i exp(lw_i) (.) x_i over a run of segments: lw [n, B, H, M] fp64 log
// weights, x states [n, B, H, K, M] (slot last) or [n, B, H, M, V] (slot third).
// A broadcast product and a sum rather than an einsum: the run is a handful of
// segments, and at short shards the op's time is its host time.
at::Tensor weighted_sum(const at::Tensor& lw, const at::Tensor& x, bool slot_last,
                        at::ScalarType dt) {
  const at::Tensor w = lw.exp().to(dt);
  return (x * w.unsqueeze(slot_last ? 3 : 4)).sum(0);
}

// LASP-2 forward: every rank gathers all segments' end states and log decays and
// evaluates the prefix recurrence S_j = pass_through_j ? D_j (.) S_{j-1} + L_j : L_j
// in closed form for its own segments only: S_t = sum_{i=r..t} exp(C_t - C_i) (.) L_i,
// r the last segment <= t that does not pass its state through, C the inclusive
// prefix sum of the log decays (fp64, so the differences keep their precision).
// A fixed number of tensor ops whatever the world size. Only segment 0's owner
// holds the initial state h0; it sends its end state with h0's decayed
// contribution folded in, so the recurrence starts at zero.
ExchangeFwd lasp2_forward(comm::Communicator& c, const GsaPlan& plan,
                          const std::vector<SegState>& local, const SegState& h0) {
  const int64_t nloc = static_cast<int64_t>(local.size());
  const SegmentInfo& first = plan.all[0];
  std::vector<at::Tensor> rows;
  for (int64_t li = 0; li < nloc; ++li) {
    SegState st = local[li];
    if (first.seg.rank == plan.rank && local_index(first.seg) == li && first.pass_through) {
      SegState folded = add(decayed(h0, st.logd), st);
      st = {folded.hk, folded.hv, st.logd};
    }
    rows.push_back(pack(st, true));
  }
  at::Tensor send = at::stack(rows).contiguous();  // [nloc, B, X]
  at::Tensor recv = at::empty({plan.world, nloc, send.size(1), send.size(2)}, send.options());
  c.all_gather(to_buffer(send), to_buffer(recv));
  const SegState& like = local[0];
  const Gathered all = in_sequence_order(plan, recv, like.hk, like.hv, like.logd.sizes());
  const at::Tensor &Lk = all.hk, &Lv = all.hv;
  const at::Tensor C = all.logd.cumsum(0);  // [n, B, H, M]
  const int64_t n = Lk.size(0);
  const auto dt = like.hk.scalar_type();
  ExchangeFwd out;
  out.incoming.resize(nloc);
  for (int64_t j = 0; j < n; ++j) {
    const SegmentInfo& info = plan.all[j];
    if (info.seg.rank != plan.rank) continue;
    SegState& in = out.incoming[local_index(info.seg)];
    if (!info.flows_in) {
      in = zeros_like(h0);
    } else if (j == 0) {
      in = h0;
    } else {
      const int64_t t = j - 1;
      int64_t r = t;
      while (r > 0 && plan.all[r].pass_through) --r;
      const at::Tensor lw = C[t].unsqueeze(0) - C.narrow(0, r, t - r + 1);
      in = {weighted_sum(lw, Lk.narrow(0, r, t - r + 1), true, dt),
            weighted_sum(lw, Lv.narrow(0, r, t - r + 1), false, dt), {}};
    }
  }
  return out;
}

ExchangeFwd lasp1_forward(comm::Communicator& c, const GsaPlan& plan,
                          const std::vector<SegState>& local, SegState S) {
  ExchangeFwd out;
  out.incoming.resize(local.size());
  const int64_t n = static_cast<int64_t>(plan.all.size());
  at::Tensor buf;
  for (int64_t j = 0; j < n; ++j) {
    const SegmentInfo& info = plan.all[j];
    const int owner = info.seg.rank;
    const int next = j + 1 < n ? plan.all[j + 1].seg.rank : -1;
    if (owner == plan.rank) {
      const SegState& L = local[local_index(info.seg)];
      out.incoming[local_index(info.seg)] = info.flows_in ? S : zeros_like(S);
      S = info.pass_through ? add(decayed(S, L.logd), L) : SegState{L.hk, L.hv, {}};
      if (next >= 0 && next != plan.rank) p2p(c, pack(S, false).contiguous(), next, true);
    } else if (next == plan.rank) {
      buf = at::empty_like(pack(S, false));
      p2p(c, buf, owner, false);
      S = unpack(buf, S, false);
    }
  }
  return out;
}

}  // namespace

ExchangeFwd exchange_forward(comm::Communicator& c, const GsaPlan& plan, StateExchange mode,
                             const std::vector<SegState>& local, const at::Tensor& h0k,
                             const at::Tensor& h0v) {
  RAVENSP_CHECK(!local.empty(), "exchange_forward: no local segments");
  SegState S{h0k.defined() ? h0k.to(local[0].hk.scalar_type()) : at::zeros_like(local[0].hk),
             h0v.defined() ? h0v.to(local[0].hv.scalar_type()) : at::zeros_like(local[0].hv),
             {}};
  return mode == StateExchange::kLasp2 ? lasp2_forward(c, plan, local, S)
                                       : lasp1_forward(c, plan, local, S);
}

ExchangeBwd exchange_backward(comm::Communicator& c, const GsaPlan& plan, StateExchange mode,
                              const std::vector<SegState>& grad_in,
                              const std::vector<at::Tensor>& local_logd) {
  const int64_t nloc = static_cast<int64_t>(grad_in.size()), n = plan.all.size();
  ExchangeBwd out;
  out.grad_end.resize(nloc);
  SegState G = zeros_like(grad_in[0]);
  // One step of the reverse scan: G is the gradient at the end of segment j.
  auto step = [&](const SegmentInfo& info, const SegState& gin, const at::Tensor& logd) {
    if (!info.flows_in) return zeros_like(G);
    return info.pass_through ? add(gin, decayed(G, logd)) : gin;
  };
  if (mode == StateExchange::kLasp2) {
    // Each row carries the segment's log decay beside its gradient, so the scan
    // needs nothing kept from the forward exchange: still one all-gather.
    std::vector<at::Tensor> rows;
    for (int64_t li = 0; li < nloc; ++li)
      rows.push_back(at::cat({pack(grad_in[li], false),
                              local_logd[li].reshape({local_logd[li].size(0), -1})}, 1));
    at::Tensor send = at::stack(rows).contiguous();  // [nloc, B, X]
    at::Tensor recv = at::empty({plan.world, nloc, send.size(1), send.size(2)}, send.options());
    c.all_gather(to_buffer(send), to_buffer(recv));
    // The reverse recurrence G_j = flows_in_j ? gin_j + [pass_through_j] D_j (.) G_{j+1} : 0
    // in closed form: G_u = sum_{i=u..e} exp(E_i - E_u) (.) gin_i, E the exclusive
    // prefix sum of the log decays and e the last segment the chain reaches.
    const SegState& like = grad_in[0];
    const Gathered all = in_sequence_order(plan, recv, like.hk, like.hv, local_logd[0].sizes());
    const at::Tensor &Gk = all.hk, &Gv = all.hv;
    const at::Tensor E = all.logd.cumsum(0) - all.logd;  // exclusive prefix sums
    const auto dt = like.hk.scalar_type();
    auto G_at = [&](int64_t u) -> SegState {  // the gradient at the state before segment u
      if (u >= n || !plan.all[u].flows_in) return zeros_like(like);
      int64_t e = u;
      while (e + 1 < n && plan.all[e].pass_through && plan.all[e + 1].flows_in) ++e;
      const at::Tensor lw = E.narrow(0, u, e - u + 1) - E[u].unsqueeze(0);
      return {weighted_sum(lw, Gk.narrow(0, u, e - u + 1), true, dt),
              weighted_sum(lw, Gv.narrow(0, u, e - u + 1), false, dt), {}};
    };
    for (int64_t j = 0; j < n; ++j)
      if (plan.all[j].seg.rank == plan.rank) out.grad_end[local_index(plan.all[j].seg)] = G_at(j + 1);
    if (plan.all[0].seg.rank == plan.rank) G = G_at(0);
  } else {
    for (int64_t j = n - 1; j >= 0; --j) {
      const SegmentInfo& info = plan.all[j];
      const int owner = info.seg.rank;
      const int prev = j > 0 ? plan.all[j - 1].seg.rank : -1;
      if (owner == plan.rank) {
        const int64_t li = local_index(info.seg);
        out.grad_end[li] = G;
        G = step(info, grad_in[li], local_logd[li]);
        if (prev >= 0 && prev != plan.rank) p2p(c, pack(G, false).contiguous(), prev, true);
      } else if (prev == plan.rank) {
        at::Tensor buf = at::empty_like(pack(G, false));
        p2p(c, buf, owner, false);
        G = unpack(buf, G, false);
      }
    }
  }
  // G now holds the gradient at the state before segment 0: the initial state's.
  if (plan.all[0].seg.rank == plan.rank) {
    out.grad_h0k = G.hk;
    out.grad_h0v = G.hv;
  }
  return out;
}

}  // namespace ravensp::sp
