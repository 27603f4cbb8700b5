"""One rank of the bf16 SP equivalence check (run under mpirun by
tests/python/test_sp_bf16_equivalence.py): NCCL on cuda:<local rank> when CUDA is
present, else the MPI host group on CPU ranks.

Every rank builds the same seeded inputs and computes three things per case:
the fp64 truth on CPU of the whole sequence, the single-device bf16 result of the
whole sequence on its device (no SP), and its own shard through the SP path in
bf16. Compared per tensor: the output, the input (or q, k, v, s, g, state)
gradients on this rank's shard, and parameter gradients summed over ranks.

Tolerance (flash-attention's rule, STYLE.md 8), with err = max |x - truth| over
the same tensor (the shard for sequence tensors):
    err(SP bf16) <= 2 * err(single-device bf16) + 2^-8 * max |truth|
For sequence tensors (outputs, input gradients) err(single-device bf16) is that
path's error on the same inputs. For whole tensors (parameter and initial-state
gradients: sums over every token, which SP re-associates across ranks) it is the
larger of two samples: on the inputs, and on the inputs moved by one bf16 rounding
(relative 2^-8, a fixed random sign per element). One sample under-represents the
rounding noise of sums that cancel: the decay parameters' gradients (A_log,
dt_bias) sit 5-15% from fp64 in bf16 at init and that error varies by a factor of
3 between equally valid orders.
SP only re-associates sums across ranks (states, partial attention merged by
log-sum-exp), so it may not add more rounding than the unsharded bf16 path
already has; the factor 2 allows that path's error again in a different order,
and 2^-8 (one bf16 ulp, relative) the final rounding of a result that SP rounds
at a different point (a merged partial output, a state in transit).

bf16 means what training does: the layers stay fp32 and run their forward under
torch.autocast(<device type>, torch.bfloat16); the linears then hand bf16 q, k, v,
s, g to the GSA and ring attention ops, which run in the dtype they get (they are
not autocast ops), on CPU as on CUDA; the truth is the same layer in fp64. The
op-level cases (sp_gsa with fp32 initial states, ring attention) pass bf16 tensors
directly and their truth starts from the same bf16-rounded inputs.

What the bound resolves: the op cases fail on a 1% error in an SP output; the
layer cases on about 10%, since bf16 autocast alone moves a Raven layer's output
3-5% from the fp64 truth (at init, T=256) and the bound is twice that.

Cases: RavenAttention (Mamba2 B=2; GLA, output gate, packed documents crossing
the shard boundaries), sp_gsa vs chunk_gsa with an initial state, ring attention
(GQA 8/2 heads, D=64; window 100, packed, both), a Raven + SPAttention hybrid
block (B=2 and packed), each in the contiguous and zigzag layouts. T=2048 tokens,
hidden 256; --small: T=256, hidden 128 (CPU ranks, a few seconds).

    mpirun -np 2 python tests/python/mpi/sp_bf16_worker.py [--small]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

import ravensp.distributed as rd
from ravensp.nn import RavenAttention, RMSNorm
from ravensp.nn.attention import SPAttention, ring_attention
from ravensp.ops.gsa import chunk_gsa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import make_gsa_inputs  # noqa: E402  (the GSA input factory of the unit tests)

BF16 = torch.bfloat16
F64 = torch.float64
CPU = torch.device("cpu")
ULP = 2.0 ** -8  # bf16's unit roundoff (8 significand bits)

Tensors = Dict[str, torch.Tensor]


@dataclass(frozen=True)
class Path:
    """Where and how a case runs: the fp64 truth on CPU, or bf16 on the rank's device."""

    device: torch.device
    bf16: bool
    jitter: bool = False  # inputs moved by one bf16 rounding (the second noise sample)

    def autocast(self):
        return torch.autocast(self.device.type, BF16) if self.bf16 else nullcontext()


TRUTH = Path(CPU, False)


@dataclass(frozen=True)
class Sizes:
    T: int  # total tokens
    hidden: int


FULL, SMALL = Sizes(T=2048, hidden=256), Sizes(T=256, hidden=128)


def pick_device() -> torch.device:
    if not torch.cuda.is_available():
        return CPU
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def documents(T: int) -> torch.Tensor:
    """Global offsets: documents of 1 and 3 tokens, and two long ones crossing the
    contiguous (T/2) and zigzag (T/4, 3T/4 on 2 ranks) shard boundaries."""
    return torch.tensor([0, 1, 37, T // 2 + 50, T - 3, T], dtype=torch.int64)


def leaf(x: torch.Tensor, path: Path, group, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """x on the path's device (fp64 for the truth, else `dtype`), sharded along the
    sequence for a group, as a fresh autograd leaf."""
    if path.jitter:
        sign = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(x.numel() % 2**31))
        x = x.float() * (1 + ULP * (2 * sign - 1))
    x = x.to(path.device, dtype if path.bf16 else F64)
    if group is not None:
        x = group.shard(x)
    return x.detach().clone().requires_grad_()


def grad_of(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(t) if t.grad is None else t.grad  # an unused leaf's gradient is 0


# ----------------------------------------------------------------------------- cases
# A case is run(path, group) -> (seq, total): tensors along the sequence (this
# rank's shard under a group) and tensors that are whole on every rank (parameter
# and initial-state gradients; under a group, this rank's share of them).

def run_layer(make: Callable[[], nn.Module], B: int, packed: bool, sizes: Sizes):
    def run(path: Path, group) -> Tuple[Tensors, Tensors]:
        torch.manual_seed(0)
        layer = make().train().to(path.device, torch.float32 if path.bf16 else F64)
        for m in layer.modules():
            if hasattr(m, "sp_group"):
                m.sp_group = group
        x = torch.randn(B, sizes.T, sizes.hidden)
        w = torch.randn(B, sizes.T, sizes.hidden)  # upstream gradient of the output
        cu = documents(sizes.T).to(path.device) if packed else None
        xs = leaf(x, path, group, torch.float32)
        with path.autocast():
            o = layer(xs, cu_seqlens=cu)
        o = o[0] if isinstance(o, tuple) else o
        o.backward(leaf(w, path, group, o.dtype))
        return ({"o": o, "dx": xs.grad},
                {f"d{n}": grad_of(p) for n, p in layer.named_parameters()})
    return run


def raven(hidden: int, layer_idx: int = 3, **extra) -> RavenAttention:
    layer = RavenAttention(hidden_size=hidden, num_heads=hidden // 64, num_slots=32, topk=8,
                           use_rope=True, layer_idx=layer_idx, sp_exchange="lasp2", **extra)
    layer.gumbel_seed, layer.gumbel_step = 7, 11
    return layer


class HybridBlock(nn.Module):
    """x -> x + Raven(norm(x)) -> + SPAttention(norm(.)), pre-norm residual."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(hidden), RMSNorm(hidden)
        self.raven = raven(hidden, layer_idx=0)
        self.attn = SPAttention(hidden, num_heads=8, num_kv_heads=2, layer_idx=1)

    def forward(self, x: torch.Tensor, cu_seqlens=None) -> torch.Tensor:
        x = x + self.raven(self.norm1(x), cu_seqlens=cu_seqlens)[0]
        return x + self.attn(self.norm2(x), cu_seqlens=cu_seqlens)[0]


def run_gsa_initial_state(sizes: Sizes):
    """sp_gsa with an initial state vs chunk_gsa on the whole sequence."""
    B, H, K, V, M = 2, 2, 64, 64, 32
    *qkvsg, hk0, hv0 = make_gsa_inputs(B, sizes.T, H, K, V, M, seed=1, states=True,
                                       requires_grad=False)
    qkvsg = [t.to(BF16) for t in qkvsg]  # the truth starts from the same rounded inputs
    w = torch.randn(B, sizes.T, H, V, generator=torch.Generator().manual_seed(2))

    def run(path: Path, group):
        ins = [leaf(t, path, group, BF16) for t in qkvsg]
        states = [leaf(t, path, None, torch.float32) for t in (hk0, hv0)]  # whole, every rank
        if group is None:
            o = chunk_gsa(*ins, initial_state=tuple(states))[0]
        else:
            o = rd.sp_gsa(*ins, group, initial_state=tuple(states))
        o.backward(leaf(w, path, group, o.dtype))
        seq = {"o": o, **{f"d{n}": t.grad for n, t in zip("qkvsg", ins)}}
        return seq, {"dhk0": grad_of(states[0]), "dhv0": grad_of(states[1])}
    return run


def dense_attention(q, k, v, window: Optional[int], cu: Optional[torch.Tensor]):
    """Causal softmax attention as a dense mask: key j is visible to query i iff
    0 <= i - j < window (no window: any j <= i) and both lie in one document."""
    T, G = q.shape[1], q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(G, 2), v.repeat_interleave(G, 2)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    visible = (i - j >= 0) & ((i - j < window) if window else True)
    if cu is not None:
        doc = torch.searchsorted(cu[1:], torch.arange(T), right=True)
        visible = visible & (doc[:, None] == doc[None, :])
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * q.shape[-1] ** -0.5
    p = torch.softmax(s.masked_fill(~visible, float("-inf")), -1)
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


def run_ring(B: int, window: Optional[int], packed: bool, sizes: Sizes):
    """ring_attention (GQA 8/2 heads, D=64) vs a dense fp64 masked softmax."""
    gen = torch.Generator().manual_seed(3)
    H, Hkv, D = 8, 2, 64
    qkv = [torch.randn(B, sizes.T, h, D, generator=gen).to(BF16) for h in (H, Hkv, Hkv)]
    w = torch.randn(B, sizes.T, H, D, generator=gen)
    cu = documents(sizes.T) if packed else None

    def run(path: Path, group):
        q, k, v = (leaf(t, path, group, BF16) for t in qkv)
        if path.bf16:
            o = ring_attention(q, k, v, window=window, sp_group=group,
                               cu_seqlens=None if cu is None else cu.to(path.device))
        else:
            o = dense_attention(q, k, v, window, cu)
        o.backward(leaf(w, path, group, o.dtype))
        return {"o": o, "dq": q.grad, "dk": k.grad, "dv": v.grad}, {}
    return run


def cases(sizes: Sizes):
    h = sizes.hidden
    return {
        "raven-mamba2-B2": run_layer(lambda: raven(h), 2, False, sizes),
        "raven-gla-packed": run_layer(lambda: raven(h, decay_type="GLA", use_output_gate=True,
                                                    router_score="softmax"), 1, True, sizes),
        "gsa-initial-state": run_gsa_initial_state(sizes),
        "ring-window100-B2": run_ring(2, 100, False, sizes),
        "ring-packed": run_ring(1, None, True, sizes),
        "ring-packed-window100": run_ring(1, 100, True, sizes),
        "hybrid-B2": run_layer(lambda: HybridBlock(h), 2, False, sizes),
        "hybrid-packed": run_layer(lambda: HybridBlock(h), 1, True, sizes),
    }


# ----------------------------------------------------------------------------- comparison

def collect(seq: Tensors, total: Tensors, group) -> Tuple[Tensors, Tensors]:
    """fp64 CPU copies; under a group, the whole tensors summed over ranks (SP
    ranks hold disjoint tokens, so their gradient shares add)."""
    if group is not None:
        total = {n: group.all_gather(t.detach()).sum(0) for n, t in total.items()}
    return ({n: t.detach().to(CPU, F64) for n, t in seq.items()},
            {n: t.detach().to(CPU, F64) for n, t in total.items()})


class Report:
    """Errors of every (case, tensor) on this rank; judged together on all ranks."""

    def __init__(self):
        self.names: List[Tuple[str, str]] = []
        self.figures: List[List[float]] = []

    def add(self, case: str, tensor: str, sp, singles, truth) -> None:
        scale = truth.abs().max().item()
        err_sp = (sp - truth).abs().max().item() if sp.shape == truth.shape else float("inf")
        err_single = max((single - truth).abs().max().item() for single in singles)
        self.names.append((case, tensor))
        self.figures.append([err_sp, err_single, 2 * err_single + ULP * scale, scale])

    def compare(self, case: str, group, truth, singles, sp) -> None:
        """Sequence tensors on this rank's shard; whole tensors as they are."""
        for tensor, want in truth[0].items():
            self.add(case, tensor, sp[0][tensor], [group.shard(singles[0][0][tensor])],
                     group.shard(want))
        for tensor, want in truth[1].items():
            self.add(case, tensor, sp[1][tensor], [s[1][tensor] for s in singles], want)

    def finish(self, group, device: torch.device) -> List[str]:
        """Prints every figure (rank 0); returns the failed (rank, case, tensor) lines."""
        figs = group.all_gather(torch.tensor(self.figures, dtype=F64, device=device)).cpu()
        failed = []
        for i, (case, tensor) in enumerate(self.names):
            for r in range(group.size):
                err_sp, err_single, bound, scale = figs[r, i].tolist()
                ok = err_sp <= bound and scale > 0  # NaN fails; a zero truth proves nothing
                line = (f"case={case} tensor={tensor} rank={r} err_sp={err_sp:.3e} "
                        f"err_single={err_single:.3e} bound={bound:.3e} max_truth={scale:.3e}"
                        f"{'' if ok else '  FAIL'}")
                if group.rank == 0:
                    print(line, flush=True)
                if not ok:
                    failed.append(line)
        return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="short sequences (CPU ranks, CI)")
    sizes = SMALL if parser.parse_args().small else FULL
    device = pick_device()
    world = rd.init_from_env("contiguous", device)
    groups = [world, rd.SPGroup(world.handle, "zigzag")]
    if sizes.T % (2 * world.size):
        raise SystemExit(f"T={sizes.T} must split into 2 * {world.size} zigzag chunks")
    report = Report()
    for case, run in cases(sizes).items():
        t0 = time.perf_counter()
        truth = collect(*run(TRUTH, None), None)
        singles = [collect(*run(Path(device, True, jitter), None), None) for jitter in (False, True)]
        for group in groups:
            sp = collect(*run(Path(device, True), group), group)
            report.compare(f"{case}/{group.layout_name}", group, truth, singles, sp)
        if world.rank == 0:
            print(f"# {case}: {time.perf_counter() - t0:.1f} s", flush=True)
    failed = report.finish(world, device)
    world.barrier()  # rank 0's figures first, then the verdicts
    if failed:
        raise SystemExit(f"rank {world.rank}: {len(failed)} bf16 SP checks failed (FAIL "
                         f"above), first: {failed[0]}")
    print(f"rank {world.rank}/{world.size} on {device}: all bf16 SP checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
