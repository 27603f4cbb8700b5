"""The GSA custom ops against the plain token-by-token oracle, and their contract:
gradcheck, chunked == recurrent, state splitting, packed sequences, opcheck,
torch.compile tracing, dtypes, and argument errors that name the argument."""
import pytest
import torch

import ravensp
from ravensp.testing import gsa_recurrence_reference
from conftest import TOLERANCE, make_gsa_inputs


def _grads(out, inputs, seed=1):
    """Gradients of a fixed random projection of every output."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, dtype=o.dtype, generator=gen).to(o.dtype)).sum()
               for o in out if o is not None)
    return torch.autograd.grad(loss, inputs, allow_unused=False)


def _flatten(o, state):
    return [o] + ([] if state is None else list(state))


@pytest.mark.parametrize("T,chunk", [(1, 64), (63, 16), (64, 64), (65, 64), (130, 32)])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunk_matches_reference_forward_and_grads(T, chunk, with_state):
    ins = make_gsa_inputs(2, T, 2, 8, 6, 5, states=with_state, seed=T)
    q, k, v, s, g = ins[:5]
    init = tuple(ins[5:]) if with_state else None
    o, st = ravensp.chunk_gsa(q, k, v, s, g, scale=0.8, initial_state=init,
                              output_final_state=True, chunk_size=chunk)
    o_ref, st_ref = gsa_recurrence_reference(q, k, v, s, g, 0.8, init)
    assert o_ref.abs().max() > 1e-2
    torch.testing.assert_close(o, o_ref, atol=1e-10, rtol=0)
    for a, b in zip(st, st_ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    ga = _grads(_flatten(o, st), ins)
    gb = _grads(_flatten(o_ref, st_ref), ins)
    for name, a, b in zip(["q", "k", "v", "s", "g", "hk0", "hv0"], ga, gb):
        # With one token and a zero initial state the decay multiplies zero.
        if not (name == "g" and T == 1 and not with_state):
            assert b.abs().max() > 1e-4, name
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=f"gradient of {name}")


def test_gradcheck_fp64():
    ins = make_gsa_inputs(1, 11, 1, 3, 2, 4, states=True, seed=3)

    def f(q, k, v, s, g, hk0, hv0):
        o, (hk, hv) = ravensp.chunk_gsa(q, k, v, s, g, scale=0.9, initial_state=(hk0, hv0),
                                        output_final_state=True, chunk_size=4)
        return o, hk, hv

    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-8)

    def fr(q, k, v, s, g, hk0, hv0):
        o, (hk, hv) = ravensp.fused_recurrent_gsa(q, k, v, s, g, scale=0.9,
                                                  initial_state=(hk0, hv0),
                                                  output_final_state=True)
        return o, hk, hv

    assert torch.autograd.gradcheck(fr, ins, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("T", [5, 64, 97])
def test_chunk_equals_recurrent(T):
    ins = make_gsa_inputs(2, T, 3, 4, 8, 6, states=True, seed=T)
    q, k, v, s, g, hk0, hv0 = ins
    o1, s1 = ravensp.chunk_gsa(q, k, v, s, g, 1.0, (hk0, hv0), True)
    o2, s2 = ravensp.fused_recurrent_gsa(q, k, v, s, g, 1.0, (hk0, hv0), True)
    torch.testing.assert_close(o1, o2, atol=1e-12, rtol=0)
    for a, b in zip(_grads(_flatten(o1, s1), ins), _grads(_flatten(o2, s2), ins)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("split", [1, 40, 64, 99])
def test_split_with_state_passed_equals_whole(split):
    """Forward and gradients: run [0, split) then [split, T) from its final state."""
    T = 100
    ins = make_gsa_inputs(1, T, 2, 4, 4, 8, seed=split)
    q, k, v, s, g = ins
    o_all, st_all = ravensp.chunk_gsa(q, k, v, s, g, 1.0, output_final_state=True)
    a, b = slice(0, split), slice(split, T)
    o1, st1 = ravensp.chunk_gsa(q[:, a], k[:, a], v[:, a], s[:, a], g[:, a], 1.0,
                                output_final_state=True)
    o2, st2 = ravensp.chunk_gsa(q[:, b], k[:, b], v[:, b], s[:, b], g[:, b], 1.0,
                                initial_state=st1, output_final_state=True)
    o_cat = torch.cat([o1, o2], 1)
    torch.testing.assert_close(o_cat, o_all, atol=1e-12, rtol=0)
    for x, y in zip(st2, st_all):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=0)
    for x, y in zip(_grads([o_cat, *st2], ins), _grads([o_all, *st_all], ins)):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=0)


@pytest.mark.parametrize("fn", [ravensp.chunk_gsa, ravensp.fused_recurrent_gsa])
def test_packed_equals_separate_calls(fn):
    lens = [1, 63, 2, 70]
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.long)
    T = int(cu[-1])
    ins = make_gsa_inputs(1, T, 2, 4, 3, 5, states=True, n_seqs=len(lens), seed=11)
    q, k, v, s, g, hk0, hv0 = ins
    o, st = fn(q, k, v, s, g, 1.0, (hk0, hv0), True, cu_seqlens=cu)
    outs, hks, hvs = [], [], []
    for n in range(len(lens)):
        sl = slice(int(cu[n]), int(cu[n + 1]))
        on, (hk, hv) = fn(q[:, sl], k[:, sl], v[:, sl], s[:, sl], g[:, sl], 1.0,
                          (hk0[n:n + 1], hv0[n:n + 1]), True)
        outs.append(on)
        hks.append(hk)
        hvs.append(hv)
    sep = [torch.cat(outs, 1), torch.cat(hks), torch.cat(hvs)]
    for x, y in zip([o, *st], sep):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=0)
    for name, x, y in zip("q k v s g hk0 hv0".split(), _grads([o, *st], ins), _grads(sep, ins)):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=0, msg=f"gradient of {name}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_inputs_match_fp64_reference(dtype):
    ins = make_gsa_inputs(1, 77, 2, 16, 16, 8, dtype=dtype, states=True, seed=5)
    q, k, v, s, g, hk0, hv0 = ins
    o, st = ravensp.chunk_gsa(q, k, v, s, g, 1.0, (hk0, hv0), True)
    assert o.dtype == dtype and st[0].dtype == torch.float32
    up = [t.detach().double() for t in ins]
    o_ref, _ = gsa_recurrence_reference(*up[:5], 1.0, (up[5], up[6]))
    err = (o.double() - o_ref).abs().max() / o_ref.abs().max()
    assert err < TOLERANCE[dtype], f"{dtype}: relative error {err:.2e}"
    grads = _grads([o], ins[:5])
    assert all(gr.dtype == dtype and torch.isfinite(gr).all() for gr in grads)


OPCHECK_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor",
                 "test_aot_dispatch_dynamic")


def test_opcheck_all_ops():
    q, k, v, s, g, hk0, hv0 = make_gsa_inputs(1, 20, 2, 4, 3, 5, states=True, seed=2,
                                              requires_grad=False)
    cu = torch.tensor([0, 7, 20])
    hk0n, hv0n = torch.cat([hk0, hk0]), torch.cat([hv0, hv0])
    req = [t.clone().requires_grad_() for t in (q, k, v, s, g)]
    ops = torch.ops.ravensp
    torch.library.opcheck(ops.gsa_chunk, (*req, 1.0, hk0.clone().requires_grad_(), hv0, None, 8),
                          test_utils=OPCHECK_TESTS)
    torch.library.opcheck(ops.gsa_chunk, (*req, 1.0, hk0n, hv0n, cu, 8), test_utils=OPCHECK_TESTS)
    torch.library.opcheck(ops.gsa_recurrent, (*req, 1.0, hk0, hv0, None),
                          test_utils=OPCHECK_TESTS)
    o, hkT, hvT, p, lse, _ = ops.gsa_chunk_fwd(q, k, v, s, g, 1.0, hk0, hv0, None, 8)
    torch.library.opcheck(ops.gsa_chunk_fwd, (q, k, v, s, g, 1.0, hk0, hv0, None, 8))
    for lse_arg in (lse, None):
        torch.library.opcheck(ops.gsa_chunk_bwd, (torch.randn_like(o), None, torch.randn_like(hvT),
                                                  q, k, v, s, g, p, lse_arg, 1.0, hk0, hv0, None,
                                                  8))
    torch.library.opcheck(ops.gsa_recurrent_fwd, (q, k, v, s, g, 1.0, None, None, cu))
    torch.library.opcheck(ops.gsa_recurrent_bwd, (torch.randn_like(o), None, None, q, k, v, s, g,
                                                  1.0, None, None, cu))


def _scores_from_zero_state(q, k, s, g, scale):
    """u[b, t, h, m] = scale * sum_{i <= t} (q_t . k_i) s_im exp(G_tm - G_im), G the
    cumulative log decay: the pass-1 scores of a sequence that starts from a zero
    state, written out pair by pair (fp64)."""
    G = g.cumsum(1)
    qk = torch.einsum("bthk,bihk->bhti", q, k).tril()
    decay = torch.exp(G.unsqueeze(2) - G.unsqueeze(1))  # [b, t, i, h, m]
    return scale * torch.einsum("bhti,bihm,btihm->bthm", qk, s, decay)


@pytest.mark.parametrize("chunk", [4, 16])
def test_chunk_fwd_lse_is_the_scores_logsumexp(chunk):
    q, k, v, s, g = make_gsa_inputs(2, 19, 2, 4, 3, 5, seed=11, requires_grad=False)
    o, hkT, hvT, p, lse, _ = torch.ops.ravensp.gsa_chunk_fwd(q, k, v, s, g, 0.7, None, None,
                                                             None, chunk)
    u = _scores_from_zero_state(q, k, s, g, 0.7)
    assert lse.shape == (2, 19, 2) and lse.dtype == torch.float64
    torch.testing.assert_close(lse, torch.logsumexp(u, -1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p, torch.softmax(u, -1), rtol=1e-12, atol=1e-12)


def test_chunk_bwd_rejects_a_misshapen_lse():
    q, k, v, s, g = make_gsa_inputs(1, 8, 2, 4, 3, 5, requires_grad=False)
    o, hkT, hvT, p, lse, _ = torch.ops.ravensp.gsa_chunk_fwd(q, k, v, s, g, 1.0, None, None,
                                                             None, 4)
    with pytest.raises(RuntimeError, match=r"gsa_chunk_bwd: lse must be \[1, 8, 2\], got \[1, 8\]"):
        torch.ops.ravensp.gsa_chunk_bwd(torch.randn_like(o), None, None, q, k, v, s, g, p,
                                        lse[..., 0], 1.0, None, None, None, 4)


# The CPU reference keeps no chunk states (its backward recomputes them in full
# precision): save_states gives an empty buffer, and a non-empty one (a CUDA
# forward's) is refused by name before any work.
def test_chunk_states_are_cuda_only():
    q, k, v, s, g = make_gsa_inputs(1, 8, 2, 4, 3, 5, requires_grad=False)
    ops = torch.ops.ravensp
    o, hkT, hvT, p, lse, states = ops.gsa_chunk_fwd(q, k, v, s, g, 1.0, None, None, None, 4, True)
    assert states.dtype == torch.uint8 and states.numel() == 0
    grads = ops.gsa_chunk_bwd(torch.ones_like(o), None, None, q, k, v, s, g, p, lse, 1.0, None,
                              None, None, 4, states)
    plain = ops.gsa_chunk_bwd(torch.ones_like(o), None, None, q, k, v, s, g, p, lse, 1.0, None,
                              None, None, 4)
    for a, b in zip(grads, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=r"gsa_chunk_bwd: states must be None or empty on CPU.*"
                                           r"got 16 bytes"):
        ops.gsa_chunk_bwd(torch.ones_like(o), None, None, q, k, v, s, g, p, lse, 1.0, None, None,
                          None, 4, torch.zeros(16, dtype=torch.uint8))


def test_torch_compile_traces_through_the_op():
    ins = make_gsa_inputs(1, 40, 2, 4, 4, 4, seed=8)

    def f(q, k, v, s, g):
        o, _ = ravensp.chunk_gsa(torch.nn.functional.silu(q), k, v, s, g, 1.0)
        return (o * o).sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    ref = torch.autograd.grad(f(*ins), ins)
    got = torch.autograd.grad(compiled(*ins), ins)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def _err(fn):
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value)


def test_bad_inputs_name_the_argument():
    q, k, v, s, g = make_gsa_inputs(1, 16, 2, 4, 4, 4, requires_grad=False)
    f = ravensp.chunk_gsa
    assert "k must match q in [B, T, H]" in _err(lambda: f(q, k[:, :8], v, s, g))
    assert "v must have q's dtype" in _err(lambda: f(q, k, v.float(), s, g))
    assert "g must have s's slot count M=4, got 3" in _err(lambda: f(q, k, v, s, g[..., :3]))
    assert "q must have 4 dims" in _err(lambda: f(q[0], k, v, s, g))
    assert "s must be on q's device" in _err(lambda: f(q, k, v, s.to("meta"), g))
    assert "q dtype must be one of" in _err(lambda: f(*(t.to(torch.int32) for t in (q, k, v, s, g))))
    bad_cu = {
        "strictly increasing": torch.tensor([0, 9, 9, 16]),
        "must end at T=16": torch.tensor([0, 9, 15]),
        "cu_seqlens[0] must be 0": torch.tensor([1, 9, 16]),
        "int32 or int64": torch.tensor([0.0, 16.0]),
    }
    for needle, cu in bad_cu.items():
        assert needle in _err(lambda: f(q, k, v, s, g, cu_seqlens=cu)), needle
    q2, k2, v2, s2, g2 = make_gsa_inputs(2, 16, 2, 4, 4, 4, requires_grad=False)
    assert "need batch size 1, got B=2" in _err(
        lambda: f(q2, k2, v2, s2, g2, cu_seqlens=torch.tensor([0, 16])))
    hk0 = torch.zeros(1, 2, 4, 5)
    assert "initial_state hk0 must be [1, 2, 4, 4]" in _err(
        lambda: f(q, k, v, s, g, initial_state=(hk0, torch.zeros(1, 2, 4, 4))))
    assert "chunk_size must be > 0" in _err(lambda: f(q, k, v, s, g, chunk_size=0))
    with pytest.raises(TypeError, match="initial_state must be a tuple"):
        f(q, k, v, s, g, initial_state=hk0)
