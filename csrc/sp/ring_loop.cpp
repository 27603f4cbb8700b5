// Ring attention's P-step loops. Step s of rank r reads the K/V block of r - s and
// lends its own to r + s; K/V are sent once per (reader, home) pair that the masks
// make visible, double-buffered so the next step's transfer overlaps this step's
// tiles. Backward re-reads the blocks, recomputes with the saved LSE and returns
// each block's dK/dV partial (fp32) to its home one step later, also overlapped.
#include "ring_loop.h"

#include <limits>

#include "attn_merge.h"
#include "local_attention.h"
#include "ring_exchange.h"

namespace ravensp::sp::ring {
namespace {

// Rows of a masked tile per chunk: with the tile's reach this bounds mask memory.
constexpr int64_t kMaskChunkRows = 1024;

at::Tensor rows(const at::Tensor& x, int64_t start, int64_t n) { return x.narrow(1, start, n); }

}  // namespace

std::vector<Step> active_steps(const Config& c) {
  std::vector<Step> steps;
  if (c.comm == nullptr) return steps;
  const int P = c.world, r = c.rank;
  for (int s = 1; s < P; ++s) {
    // A step is kept on every rank when any rank moves something in it, so batch
    // t carries the same ring step everywhere. Kept only where this rank takes
    // part, the lists differed between ranks once documents left some pairs
    // blind (zigzag, five ranks and more): a K/V block and a returned dK/dV
    // partial between the same two ranks, equal in size, were then posted in
    // opposite orders on the two sides and matched crosswise.
    const int src = (r - s + P) % P, dst = (r + s) % P;
    const Step st{s, src, dst, needs_block(c, r, src), needs_block(c, dst, r)};
    // Planning every other pair (P plans per step) only when this rank has no part.
    bool any = st.recv || st.send;
    for (int q = 0; q < P && !any; ++q) any = needs_block(c, q, (q - s + P) % P);
    if (any) steps.push_back(st);
  }
  return steps;
}

std::tuple<at::Tensor, at::Tensor> ring_forward(const Config& c, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v) {
  const auto acc = q.options().dtype(c.acc_dtype);
  at::Tensor o_acc = at::zeros({c.B, c.L, c.H, c.D}, acc);
  at::Tensor lse_acc = at::full({c.B, c.H, c.L}, -std::numeric_limits<double>::infinity(), acc);

  auto compute = [&](int src, const at::Tensor& kb, const at::Tensor& vb) {
    for (const Tile& t : plan_tiles(c, c.rank, src, kMaskChunkRows)) {
      auto [o_t, lse_t] = tile_forward(c, t, rows(q, t.q0, t.nq), rows(kb, t.k0, t.nk),
                                       rows(vb, t.k0, t.nk));
      merge_partial(rows(o_acc, t.q0, t.nq), lse_acc.narrow(2, t.q0, t.nq), o_t, lse_t);
    }
  };

  const std::vector<Step> steps = active_steps(c);
  if (steps.empty()) {
    compute(c.rank, k, v);
    return {o_acc.to(q.scalar_type()), lse_acc};
  }
  Exchange ex(*c.comm, q.device());
  at::Tensor kbuf[2], vbuf[2];
  auto queue_kv = [&](size_t i) {  // the K/V traffic of steps[i] into buffer slot i % 2
    const Step& st = steps[i];
    if (st.send) {
      ex.send(k, st.dst);
      ex.send(v, st.dst);
    }
    if (st.recv) {
      at::Tensor& kb = kbuf[i % 2];
      at::Tensor& vb = vbuf[i % 2];
      if (!kb.defined()) {
        kb = at::empty_like(k);
        vb = at::empty_like(v);
      }
      ex.recv(kb, st.src);
      ex.recv(vb, st.src);
    }
  };
  queue_kv(0);
  ex.start();
  compute(c.rank, k, v);  // the diagonal step overlaps the first transfer
  for (size_t i = 0; i < steps.size(); ++i) {
    ex.wait();
    if (i + 1 < steps.size()) {
      queue_kv(i + 1);
      ex.start();
    }
    if (steps[i].recv) compute(steps[i].src, kbuf[i % 2], vbuf[i % 2]);
  }
  return {o_acc.to(q.scalar_type()), lse_acc};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ring_backward(
    const Config& c, const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& o, const at::Tensor& lse) {
  const auto acc = q.options().dtype(c.acc_dtype);
  // delta = rowsum(dO * O) with the final output: the softmax-gradient term every
  // tile of a query row shares. [B, L, H] -> [B, H, L].
  at::Tensor delta = (grad_o.to(c.acc_dtype) * o.to(c.acc_dtype)).sum(-1).transpose(1, 2).contiguous();
  at::Tensor dq = at::zeros({c.B, c.L, c.H, c.D}, acc);
  at::Tensor dk = at::zeros({c.B, c.L, c.Hkv, c.D}, acc), dv = at::zeros_like(dk);

  // Adds the tiles of src's block into dq and into (dkb, dvb), src's dK/dV partial.
  auto compute = [&](int src, const at::Tensor& kb, const at::Tensor& vb, at::Tensor& dkb,
                     at::Tensor& dvb) {
    for (const Tile& t : plan_tiles(c, c.rank, src, kMaskChunkRows)) {
      auto [dq_t, dk_t, dv_t] = tile_backward(
          c, t, rows(grad_o, t.q0, t.nq), rows(q, t.q0, t.nq), rows(kb, t.k0, t.nk),
          rows(vb, t.k0, t.nk), rows(o, t.q0, t.nq), lse.narrow(2, t.q0, t.nq),
          delta.narrow(2, t.q0, t.nq));
      rows(dq, t.q0, t.nq).add_(dq_t);
      rows(dkb, t.k0, t.nk).add_(dk_t);
      rows(dvb, t.k0, t.nk).add_(dv_t);
    }
  };
  auto finish = [&] {
    return std::make_tuple(dq.to(q.scalar_type()), dk.to(k.scalar_type()), dv.to(v.scalar_type()));
  };

  const std::vector<Step> steps = active_steps(c);
  if (steps.empty()) {
    compute(c.rank, k, v, dk, dv);
    return finish();
  }

  Exchange ex(*c.comm, q.device());
  const size_t n = steps.size();
  at::Tensor kbuf[2], vbuf[2], dkp[2], dvp[2];  // received blocks and their dK/dV partials
  std::vector<std::pair<at::Tensor, at::Tensor>> returned;  // partials of my block, arriving
  // Batch t carries the K/V of steps[t] and returns the partials of steps[t - 2]; the
  // order (K/V first, then partials) is the same on every rank, so pairs match.
  auto queue = [&](size_t t) {
    if (t < n) {
      const Step& st = steps[t];
      if (st.send) {
        ex.send(k, st.dst);
        ex.send(v, st.dst);
      }
      if (st.recv) {
        if (!kbuf[t % 2].defined()) {
          kbuf[t % 2] = at::empty_like(k);
          vbuf[t % 2] = at::empty_like(v);
        }
        ex.recv(kbuf[t % 2], st.src);
        ex.recv(vbuf[t % 2], st.src);
      }
    }
    if (t >= 2 && t - 2 < n) {
      const Step& st = steps[t - 2];
      if (st.recv) {
        ex.send(dkp[t % 2], st.src);
        ex.send(dvp[t % 2], st.src);
      }
      if (st.send) {
        returned.emplace_back(at::empty_like(dk), at::empty_like(dv));
        ex.recv(returned.back().first, st.dst);
        ex.recv(returned.back().second, st.dst);
      }
    }
    ex.start();
  };
  auto collect = [&] {  // after a wait: fold the partials that came home
    for (auto& [a, b] : returned) {
      dk.add_(a);
      dv.add_(b);
    }
    returned.clear();
  };

  queue(0);
  compute(c.rank, k, v, dk, dv);  // the diagonal step overlaps the first transfer
  for (size_t t = 0; t < n; ++t) {
    ex.wait();
    collect();
    queue(t + 1);  // partials of steps[t - 1] go home while steps[t] computes
    if (steps[t].recv) {
      dkp[t % 2] = at::zeros_like(dk);
      dvp[t % 2] = at::zeros_like(dv);
      compute(steps[t].src, kbuf[t % 2], vbuf[t % 2], dkp[t % 2], dvp[t % 2]);
    }
  }
  ex.wait();  // the last two returns drain after the loop
  collect();
  queue(n + 1);
  ex.wait();
  collect();
  return finish();
}

}  // namespace ravensp::sp::ring
