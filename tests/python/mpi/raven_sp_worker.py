"""One rank of the SP RavenAttention equivalence check (run under mpirun by
tests/python/test_sp_raven.py). Every rank builds the same layer and global
input, computes the unsharded forward/backward itself, then runs its shard
through the SP layer and compares output, input gradient and the parameter
gradients summed over ranks, in fp64. Exits non-zero on any mismatch.
"""
import sys

import torch

import ravensp
import ravensp.distributed as rd
from ravensp.nn import RavenAttention


def check(name, got, want, rank, tol=1e-10):
    assert want.abs().max() > 1e-8, f"{name}: reference is zero"
    err = (got - want).abs().max().item()
    if err > tol:
        raise AssertionError(f"rank {rank}: {name} differs by {err:.3e} (tolerance {tol})")


def run(layout: str, exchange: str, packed: bool, cfg: dict) -> None:
    if not hasattr(run, "world"):
        # mpirun gives an MPI group; a torchrun-style environment (RANK, WORLD_SIZE,
        # MASTER_ADDR, MASTER_PORT) the TCP host backend.
        run.world = rd.init_from_env(layout)
    group = rd.SPGroup(run.world.handle, layout)
    P, r = group.size, group.rank
    torch.manual_seed(0)
    per_rank = 10 if layout == "zigzag" else 9
    T, B = per_rank * P, 1 if packed else 2
    layer = RavenAttention(layer_idx=3, **cfg).double().train()
    layer.gumbel_seed, layer.gumbel_step = 7, 11
    x = torch.randn(B, T, cfg["hidden_size"], dtype=torch.float64)
    w = torch.randn(B, T, cfg["hidden_size"], dtype=torch.float64)
    cu = None
    if packed:
        offs = sorted({0, 1, 5, per_rank + 3, max(2, T - 2 * per_rank - 1), T - 1, T})
        cu = torch.tensor(offs, dtype=torch.long)
    # Unsharded reference (this process, whole sequence).
    xr = x.clone().requires_grad_()
    o_ref = layer(xr, cu_seqlens=cu)[0]
    (o_ref * w).sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=True)
    # This rank's shard through the SP path.
    layer.sp_group, layer.sp_exchange = group, exchange
    xs = group.shard(x).requires_grad_()
    o = layer(xs, cu_seqlens=cu)[0]
    (o * group.shard(w)).sum().backward()
    layer.sp_group = None
    tag = f"[{layout} {exchange} packed={packed}]"
    check(f"{tag} output", o, group.shard(o_ref.detach()), r)
    check(f"{tag} input gradient", xs.grad, group.shard(xr.grad), r)
    check(f"{tag} gathered output", group.gather_sequence(o.detach()), o_ref.detach(), r)
    for n, p in layer.named_parameters():
        total = group.all_gather(p.grad).sum(0)  # SP ranks hold disjoint tokens: grads add
        check(f"{tag} d{n}", total, ref_grads[n], r)


def main() -> int:
    cfgs = [
        dict(hidden_size=32, num_heads=2, num_slots=8, topk=3, use_rope=True),
        dict(hidden_size=32, num_heads=2, num_slots=8, topk=3, decay_type="GLA",
             use_output_gate=True, router_score="softmax", use_rope=True),
    ]
    for layout in ("contiguous", "zigzag"):
        for exchange in ("lasp2", "lasp1"):
            for packed in (False, True):
                run(layout, exchange, packed, cfgs[packed])
    g = run.world
    if g.size > 1 and rd._C.launch_env()[0] == "mpi":
        # A group with a host control plane (what NCCL groups get): the layer still
        # matches, and splits into a mesh keep a control plane of their own.
        data = rd.SPGroup(rd._C.group_init_mpi(), "zigzag")
        rd._C.group_set_control(data.handle, rd._C.group_init_mpi())
        assert rd._C.group_has_control(data.handle)
        run.world = data
        run("zigzag", "lasp2", True, cfgs[1])
        mesh = rd.init_mesh(data, g.size)
        assert rd._C.group_has_control(mesh.sp.handle) and rd._C.group_has_control(mesh.dp.handle)
        run.world = g
    print(f"rank {g.rank}/{g.size}: all SP RavenAttention checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
