"""The GSA CUDA kernels against the fp64 CPU reference: forward, gradients,
initial/final states, odd lengths, packed sequences, every supported (K, V, M),
the fused recurrent forward, and errors for shapes outside the CUDA table.

Tolerances (relative to max|reference|, per tensor), derived rather than tuned:
the kernels round the chunk's operands to the input dtype for the tensor-core
products (q k^T, q Hk, dO Hv^T, p Hv, ...) and accumulate in fp32. Each product
term then carries up to two operand roundings (2 * 2^-9 for bf16, 2 * 2^-12 for
fp16) and the result one output rounding (2^-9 / 2^-12); terms of mixed sign
partly cancel, so a gradient built from three chained products can reach about
8x the operand rounding relative to its maximum: bf16 2 * 8 * 2^-9 = 3.1e-2,
fp16 2 * 8 * 2^-12 = 3.9e-3. fp32 runs on the FMA units with fast exp (2 ulp)
and running decay products over <= 64 tokens: 64 * 2^-23 * a few = 1e-4.
"""
import pytest
import torch

import ravensp
from conftest import make_gsa_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (the CPU suite covers the CPU ops)")

GPU_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2 * 8 * 2.0 ** -9,
                 torch.float16: 2 * 8 * 2.0 ** -12}
NAMES = ["q", "k", "v", "s", "g", "hk0", "hv0"]


def _rel(a, b):
    """max|a - b| / max|b|; absolute where the reference is zero up to fp64
    rounding (the decay gradient of one token from a zero state)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    assert torch.isfinite(a).all(), "non-finite values"
    scale = b.abs().max().item()
    return ((a - b).abs().max() / (scale if scale > 1e-12 else 1.0)).item()


def _proj_grads(outs, inputs, seed=1):
    gen = torch.Generator().manual_seed(seed)
    loss = 0
    for o in outs:
        w = torch.randn(o.shape, dtype=torch.float64, generator=gen).to(o.device, o.dtype)
        loss = loss + (o * w).sum()
    return torch.autograd.grad(loss, inputs)


def _run_pair(fn, dtype, B, T, H, K, V, M, states, cu=None, n_seqs=None, grads=True, seed=0,
              scale=0.8):
    """(cuda outputs+grads, fp64 cpu outputs+grads) for fn on identical inputs."""
    ref = make_gsa_inputs(B, T, H, K, V, M, states=states, n_seqs=n_seqs, seed=seed,
                          requires_grad=grads)
    # Round the inputs to dtype once so both sides see the same values.
    ref = [t.detach().to(dtype if i < 5 else torch.float32).double().requires_grad_(grads)
           for i, t in enumerate(ref)]
    dev = [t.detach().to("cuda", dtype if i < 5 else torch.float32).requires_grad_(grads)
           for i, t in enumerate(ref)]
    res = []
    for ins, cu_ in ((dev, None if cu is None else cu.cuda()), (ref, cu)):
        init = (ins[5], ins[6]) if states else None
        o, st = fn(*ins[:5], scale=scale, initial_state=init, output_final_state=True,
                   cu_seqlens=cu_)
        outs = [o, *st]
        gr = _proj_grads(outs, ins) if grads else []
        res.append((outs, gr))
    return res


def _check(res, dtype, names_out=("o", "hkT", "hvT"), grads=True, states=True):
    (outs, gr), (routs, rgr) = res
    tol = GPU_TOLERANCE[dtype]
    for name, a, b in zip(names_out, outs, routs):
        err = _rel(a, b)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.1e}"
    if grads:
        for name, a, b in zip(NAMES if states else NAMES[:5], gr, rgr):
            err = _rel(a, b)
            assert err < tol, f"grad {name}: relative error {err:.2e} >= {tol:.1e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [1, 63, 64, 65, 257])
@pytest.mark.parametrize("states", [False, True])
def test_chunk_forward_and_grads(dtype, T, states):
    res = _run_pair(ravensp.chunk_gsa, dtype, 2, T, 2, 64, 64, 32, states, seed=T)
    _check(res, dtype, states=states)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunk_packed_sequences(dtype):
    lens = [1, 63, 2, 70, 130]
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.long)
    res = _run_pair(ravensp.chunk_gsa, dtype, 1, int(cu[-1]), 2, 64, 128, 64, True, cu=cu,
                    n_seqs=len(lens), seed=11)
    _check(res, dtype)


@pytest.mark.parametrize("K", [64, 128, 256])
@pytest.mark.parametrize("V", [64, 128, 256])
@pytest.mark.parametrize("M", [32, 64, 128, 256])
def test_every_supported_shape_forward(K, V, M):
    res = _run_pair(ravensp.chunk_gsa, torch.bfloat16, 1, 100, 1, K, V, M, True, grads=False,
                    seed=K + V + M)
    _check(res, torch.bfloat16, grads=False)


@pytest.mark.parametrize("K,V,M", [(256, 256, 256), (128, 64, 32), (64, 256, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_shapes_backward(K, V, M, dtype):
    res = _run_pair(ravensp.chunk_gsa, dtype, 1, 130, 2, K, V, M, True, seed=M)
    _check(res, dtype)


# The backward rebuilds the pass-1 scores from the forward's row log-sum-exp
# (u = log p + lse) instead of recomputing them; without lse it runs pass 1
# again for p and lse and rebuilds u from those.
# The lse is checked against the fp64 CPU one, and the gradients of both
# backward routes against the fp64 CPU backward, each to the GPU tolerance of
# the dtype. (The two routes differ by more than fp32 rounding in 16-bit: the
# recomputed u carries its own TF32 rounding of the intra products, about
# 4e-4 of dg here.) M = 256 covers the sliced kernel, packed sequences the
# per-row lse indexing.
@pytest.mark.parametrize("dtype,M,packed", [
    (torch.float32, 64, False), (torch.bfloat16, 64, True), (torch.bfloat16, 256, False),
])
def test_backward_with_and_without_lse(dtype, M, packed):
    cu = torch.tensor([0, 5, 70, 150]) if packed else None
    B, T = (1, 150) if packed else (2, 130)
    ins = make_gsa_inputs(B, T, 2, 64, 128, M, dtype=dtype, states=True, seed=M,
                          n_seqs=3 if packed else None, requires_grad=False)
    ref = [t.double() for t in ins]
    dev = [t.cuda() for t in ins[:5]] + [t.float().cuda() for t in ins[5:]]
    dcu = None if cu is None else cu.cuda()
    ops = torch.ops.ravensp
    o, hkT, hvT, p, lse, states = ops.gsa_chunk_fwd(*dev[:5], 0.8, *dev[5:], dcu, 64, True)
    _, _, rhvT, rp, rlse, _ = ops.gsa_chunk_fwd(*ref[:5], 0.8, *ref[5:], cu, 64)
    assert lse.shape == (B, T, 2) and lse.dtype == torch.float32
    tol = GPU_TOLERANCE[dtype]
    err = _rel(lse, rlse)
    assert err < tol, f"lse: relative error {err:.2e} >= {tol:.1e}"
    d_o = torch.randn(o.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rgrads = ops.gsa_chunk_bwd(d_o, None, torch.ones_like(rhvT), *ref[:5], rp, None, 0.8,
                               *ref[5:], cu, 64)
    for lse_arg in (lse, None):
        grads = ops.gsa_chunk_bwd(d_o.to("cuda", o.dtype), None, torch.ones_like(hvT), *dev[:5],
                                  p, lse_arg, 0.8, *dev[5:], dcu, 64)
        route = "with lse" if lse_arg is not None else "without lse"
        for name, a, b in zip(NAMES, grads, rgrads):
            err = _rel(a, b)
            assert err < tol, f"grad {name} {route}: relative error {err:.2e} >= {tol:.1e}"
        # The forward's kept chunk states are the ones the backward recomputes
        # (same kernels, same route): the gradients agree bit for bit, but dv,
        # which reads pass 2's kept pair matrix A2. bwd_pairs forms A2 over
        # 16-slot slices, pass 2 over 32: another fp32 summation order before
        # the rounding to the input dtype, so dv agrees to that rounding.
        kept = ops.gsa_chunk_bwd(d_o.to("cuda", o.dtype), None, torch.ones_like(hvT), *dev[:5],
                                 p, lse_arg, 0.8, *dev[5:], dcu, 64, states)
        for name, a, b in zip(NAMES, kept, grads):
            if name == "v":
                err = _rel(a, b)
                assert err < tol, f"grad v {route}, kept A2: relative error {err:.2e} >= {tol:.1e}"
            else:
                assert torch.equal(a, b), f"grad {name} {route}: kept states differ from recomputed"


# The chunk-start states come from one of two routes (gsa_state_walk.cu): a walk
# over the chunks per state tile (large shapes) or local states then a scan.
# Both are forced here on shapes that exercise what differs between them: the
# initial and final states, packed sequences (each walks its own chunks),
# partial last chunks, the slot slices (M = 32, 256) and fp32.
@pytest.mark.parametrize("route", ["walk", "scan"])
@pytest.mark.parametrize("dtype,T,K,V,M,packed", [
    (torch.bfloat16, 257, 64, 128, 32, False),
    (torch.float32, 130, 128, 64, 256, False),
    (torch.bfloat16, 0, 64, 128, 64, True),
    (torch.float16, 200, 256, 64, 128, False),
])
def test_state_routes(route, dtype, T, K, V, M, packed, monkeypatch):
    monkeypatch.setenv("RAVENSP_GSA_STATES", route)
    if packed:
        lens = [1, 63, 2, 70, 130]
        cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.long)
        res = _run_pair(ravensp.chunk_gsa, dtype, 1, int(cu[-1]), 2, K, V, M, True, cu=cu,
                        n_seqs=len(lens), seed=21)
    else:
        res = _run_pair(ravensp.chunk_gsa, dtype, 2, T, 2, K, V, M, True, seed=T + M)
    _check(res, dtype)


def test_state_route_rejects_unknown_value(monkeypatch):
    monkeypatch.setenv("RAVENSP_GSA_STATES", "fast")
    q, k, v, s, g = make_gsa_inputs(1, 70, 2, 64, 64, 32, dtype=torch.bfloat16, device="cuda")[:5]
    with pytest.raises(RuntimeError, match="RAVENSP_GSA_STATES must be 'walk' or 'scan'.*'fast'"):
        ravensp.chunk_gsa(q, k, v, s, g, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T", [1, 5, 33])
def test_fused_recurrent(dtype, T):
    res = _run_pair(ravensp.fused_recurrent_gsa, dtype, 2, T, 2, 64, 64, 64, True, seed=T)
    _check(res, dtype)


def test_fused_recurrent_packed():
    lens = [3, 1, 9]
    cu = torch.tensor([0, 3, 4, 13], dtype=torch.long)
    res = _run_pair(ravensp.fused_recurrent_gsa, torch.float32, 1, 13, 2, 128, 64, 32, True,
                    cu=cu, n_seqs=len(lens), seed=4)
    _check(res, torch.float32)


def test_long_sequence_decay_is_stable():
    """Strong decay over 4096 tokens: no overflow, matches the reference."""
    res = _run_pair(ravensp.chunk_gsa, torch.bfloat16, 1, 4096, 1, 64, 64, 32, False, seed=9,
                    grads=True)
    _check(res, torch.bfloat16, states=False)


def _err(fn):
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value)


def test_outside_the_table_raises_with_supported_values():
    q, k, v, s, g = make_gsa_inputs(1, 16, 1, 96, 64, 64, dtype=torch.bfloat16, device="cuda",
                                    requires_grad=False)
    assert "K=96 unsupported on CUDA; supported: 64, 128, 256" in _err(
        lambda: ravensp.chunk_gsa(q, k, v, s, g))
    q, k, v, s, g = make_gsa_inputs(1, 16, 1, 64, 64, 48, dtype=torch.bfloat16, device="cuda",
                                    requires_grad=False)
    assert "M=48 unsupported on CUDA; supported: 32, 64, 128, 256" in _err(
        lambda: ravensp.chunk_gsa(q, k, v, s, g))
    q, k, v, s, g = make_gsa_inputs(1, 16, 1, 64, 64, 64, dtype=torch.bfloat16, device="cuda",
                                    requires_grad=False)
    assert "chunk_size=16 unsupported on CUDA; supported: 64" in _err(
        lambda: ravensp.chunk_gsa(q, k, v, s, g, chunk_size=16))
    q, k, v, s, g = make_gsa_inputs(1, 16, 1, 64, 64, 64, device="cuda", requires_grad=False)
    assert "float64 is not supported by the CUDA kernels" in _err(
        lambda: ravensp.chunk_gsa(q, k, v, s, g))


def test_opcheck_cuda():
    q, k, v, s, g, hk0, hv0 = make_gsa_inputs(1, 70, 2, 64, 64, 32, dtype=torch.float32,
                                              states=True, device="cuda", requires_grad=False)
    hk0, hv0 = hk0.float(), hv0.float()
    ops = torch.ops.ravensp
    torch.library.opcheck(ops.gsa_chunk_fwd, (q, k, v, s, g, 1.0, hk0, hv0, None, 64))
    torch.library.opcheck(ops.gsa_chunk_fwd, (q, k, v, s, g, 1.0, hk0, hv0, None, 64, True))
    o, hkT, hvT, p, lse, states = ops.gsa_chunk_fwd(q, k, v, s, g, 1.0, hk0, hv0, None, 64, True)
    for lse_arg in (lse, None):
        torch.library.opcheck(ops.gsa_chunk_bwd, (torch.randn_like(o), None, torch.randn_like(hvT),
                                                  q, k, v, s, g, p, lse_arg, 1.0, hk0, hv0, None,
                                                  64))
    torch.library.opcheck(ops.gsa_chunk_bwd, (torch.randn_like(o), None, torch.randn_like(hvT),
                                              q, k, v, s, g, p, lse, 1.0, hk0, hv0, None, 64,
                                              states))
    torch.library.opcheck(ops.gsa_recurrent_fwd, (q, k, v, s, g, 1.0, hk0, hv0, None))


# The kept chunk states' size follows from the shapes alone (the fake kernel
# computes it for torch.compile), packed batches included, and a buffer of
# another size or device is refused by name before any work.
@pytest.mark.parametrize("dtype,packed", [(torch.bfloat16, True), (torch.float32, False)])
def test_saved_states_size_and_errors(dtype, packed):
    from ravensp.ops.gsa import _saved_states_bytes
    cu = torch.tensor([0, 5, 70, 150], device="cuda") if packed else None
    B, T = (1, 150) if packed else (2, 130)
    q, k, v, s, g = make_gsa_inputs(B, T, 2, 64, 128, 32, dtype=dtype, device="cuda",
                                    n_seqs=3 if packed else None, requires_grad=False)
    ops = torch.ops.ravensp
    o, hkT, hvT, p, lse, states = ops.gsa_chunk_fwd(q, k, v, s, g, 1.0, None, None, cu, 64, True)
    assert states.dtype == torch.uint8 and states.device == q.device
    assert states.numel() == _saved_states_bytes(q, v, s, cu) > 0
    _, _, _, _, _, none = ops.gsa_chunk_fwd(q, k, v, s, g, 1.0, None, None, cu, 64)
    assert none.numel() == 0
    want = states.numel()
    for bad, got in ((states[:-256], f"\\[{want - 256}\\] on cuda"),
                     (states.cpu(), f"\\[{want}\\] on cpu")):
        with pytest.raises(RuntimeError, match=rf"gsa_chunk_bwd: states must be the chunk states "
                                               rf"a forward of this call saved \({want} bytes, "
                                               rf"uint8 on cuda:0\), got Byte {got}"):
            ops.gsa_chunk_bwd(torch.ones_like(o), None, None, q, k, v, s, g, p, lse, 1.0, None,
                              None, cu, 64, bad)
