"""sp_gsa on one GPU (a one-rank NCCL group) against the fp64 CPU reference of
the unsharded op: the CUDA split passes (kernels/gsa/gsa_cuda.h, SplitPhase):
states from a zero start, the exchange on a side stream while the zero-start
scores are computed, then the incoming state folded into the scores, the value
states and, in the backward, the state gradients.

One rank is enough to make a state enter a shard: the zigzag layout cuts the
sequence into two segments and the second takes the first's end state through
the exchange; an initial state and packed documents that cross the cut are the
other ways in. Tolerances are test_gsa_cuda.py's: the split rounds the same
operands to the input dtype as the fused kernels (the incoming key state enters
the scores as one more tensor-core product, like the chunk states do), so the
same bound holds.
"""
import pytest
import torch

import ravensp
from conftest import make_gsa_inputs
from test_gsa_cuda import GPU_TOLERANCE, _rel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (the CPU ranks run the SP suite)")

rd = pytest.importorskip("ravensp.distributed")


@pytest.fixture(scope="module")
def groups():
    made = {lay: rd.init_single(torch.device("cuda"), layout=lay)
            for lay in ("contiguous", "zigzag")}
    yield made
    for g in made.values():
        g.destroy()


def _grads(o, ins, seed=3):
    w = torch.randn(o.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad((o * w.to(o.device, o.dtype)).sum(), ins, allow_unused=True)


# route: how the split backward's first phase recomputes the chunk-start states
# (gsa_state_walk.cu); "walk" forces the walk, which these sizes would not pick.
@pytest.mark.parametrize("dtype,route", [(torch.float32, "auto"), (torch.bfloat16, "auto"),
                                         (torch.bfloat16, "walk")])
@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize("case", ["plain", "initial_state", "documents"])
def test_sp_gsa_one_gpu_equals_unsharded(groups, dtype, route, layout, case, monkeypatch):
    if route != "auto":
        monkeypatch.setenv("RAVENSP_GSA_STATES", route)
    B = 1 if case == "documents" else 2
    T, H, K, V, M = 384, 2, 64, 128, 64
    states = case == "initial_state"
    # Documents of 100, 150 and 134 tokens: the second crosses the zigzag cut
    # at 192 and neither cut nor chunk boundaries line up with them.
    cu = torch.tensor([0, 100, 250, T]) if case == "documents" else None
    ref = make_gsa_inputs(B, T, H, K, V, M, states=states, seed=7, requires_grad=False)
    ref = [t.to(dtype if i < 5 else torch.float32).double() for i, t in enumerate(ref)]
    ref = [t.requires_grad_() for t in ref]
    dev = [t.detach().to("cuda", dtype if i < 5 else torch.float32).requires_grad_()
           for i, t in enumerate(ref)]
    init = (ref[5], ref[6]) if states else None
    o_ref, _ = ravensp.chunk_gsa(*ref[:5], scale=0.8, initial_state=init, cu_seqlens=cu)
    g_ref = _grads(o_ref, ref)

    group = groups[layout]
    shard = [group.shard(t) for t in dev[:5]]  # one rank: the layout's order of the chunks
    o_sp = rd.sp_gsa(*shard, group, scale=0.8,
                     initial_state=(dev[5], dev[6]) if states else None,
                     cu_seqlens=None if cu is None else cu.cuda())
    o = group.unshard([o_sp])
    g_sp = _grads(o, dev)

    tol = GPU_TOLERANCE[dtype]
    err = _rel(o, o_ref)
    assert err < tol, f"o: relative error {err:.2e} >= {tol:.1e}"
    for name, a, b in zip(["q", "k", "v", "s", "g", "hk0", "hv0"], g_sp, g_ref):
        err = _rel(a, b)
        assert err < tol, f"grad {name}: relative error {err:.2e} >= {tol:.1e}"
