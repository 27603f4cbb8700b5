"""Ring attention benchmark (issue 6, deliverable 4): forward+backward per GPU.

On one GPU: torch SDPA (cuDNN backend, the baseline; flash for reference) and
ravensp's ring_attention with no SP group (P = 1, contiguous and zigzag tiling),
plus the compute one rank of a 2-GPU zigzag ring does (its diagonal step and one
half block, merged by LSE, fwd and bwd passes called as the ring calls them) with
the transfer left out. Efficiency compares attention FLOP/s per GPU with the
baseline's at the same tokens per GPU.

Launched with one process per GPU (mpirun or torchrun), it measures the rings
themselves on P GPUs holding P*L tokens, L per GPU: ravensp's ring_attention over
its NCCL SP group (zigzag) and PyTorch's context parallelism (context_parallel,
the same head-tail split), each against the cuDNN SDPA of L tokens on one GPU.
Every figure is the slowest rank's median. Rank 0 merges them into --out under
"multi_gpu" (two GPUs; "multi_gpu_<P>gpu" for more) and fills each one-GPU row's "efficiency_vs_local_sdpa_<P>gpu",
keeping the one-GPU "results".

    python -m ravensp.bench.ring_attention --out docs/benchmarks/ring_attention.json
    mpirun -np 2 --allow-run-as-root python -m ravensp.bench.ring_attention \
        --out docs/benchmarks/ring_attention.json
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import ravensp  # noqa: F401  (registers torch.ops.ravensp.*)

from ravensp.bench.timing import cuda_time_ms, launch_world, slowest

OPS = torch.ops.ravensp
SDPA = F.scaled_dot_product_attention  # context_parallel patches F's attribute; restored from this


def timed(fn, reps):
    """Median milliseconds of fn() over reps runs after one warm-up, by CUDA events."""
    return cuda_time_ms(fn, reps=reps, warmup=1)


def causal_flops(T, H, D):
    """Forward + backward FLOPs of causal attention on T tokens (bwd = 2.5 x fwd)."""
    return 3.5 * 4 * T * T * H * D / 2


def inputs(L, H, Hkv, D, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    kw = dict(device="cuda", dtype=torch.bfloat16, generator=gen)
    return [torch.randn(1, L, h, D, **kw) for h in (H, Hkv, Hkv, H)]


def sdpa_step(q, k, v, g, backend):
    leaves = [t.detach().transpose(1, 2).requires_grad_() for t in (q, k, v)]
    with sdpa_kernel(backend):
        o = F.scaled_dot_product_attention(*leaves, is_causal=True, enable_gqa=k.shape[2] != q.shape[2])
    o.backward(g.transpose(1, 2))


def ring_step(q, k, v, g, layout, handle=0):
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    o = OPS.ring_attention(*leaves, q.shape[-1] ** -0.5, True, 0, None, handle, layout)
    o.backward(g)


def p2_rank_compute(q, k, v, g, k_peer, v_peer):
    """What rank 1 of a 2-GPU zigzag ring computes, minus the transfers: its diagonal
    step (the op's zigzag tiles on its own K/V, forward and recompute backward) and
    its half-block step, all L queries against the first L/2 keys of rank 0 (one
    unmasked cuDNN call each way, as the ring plans it), with the fp32 LSE merge."""
    s = q.shape[-1] ** -0.5
    L = q.shape[1]
    o1, l1 = OPS.ring_attention_fwd(q, k, v, s, True, 0, None, 0, 1)
    leaves = [t.detach().transpose(1, 2).requires_grad_()
              for t in (q, k_peer[:, : L // 2], v_peer[:, : L // 2])]
    o2, l2 = torch.ops.aten._scaled_dot_product_cudnn_attention(*leaves, None, True, 0.0, False,
                                                                 False, scale=s)[:2]
    l2 = l2.reshape(l1.shape).detach()
    lse = torch.logaddexp(l1, l2)
    w1 = (l1 - lse).exp().transpose(1, 2)[..., None]
    w2 = (l2 - lse).exp().transpose(1, 2)[..., None]
    o = (o1.float() * w1 + o2.detach().transpose(1, 2).float() * w2).to(q.dtype)
    OPS.ring_attention_bwd(g, q, k, v, o, lse, s, True, 0, None, 0, 1)
    o2.backward(g.transpose(1, 2))  # the half block's backward: same kernel, same FLOPs


def run(lengths, H, Hkv, D, reps):
    rows = []
    for L in lengths:
        q, k, v, g = inputs(L, H, Hkv, D)
        kp, vp = inputs(L, H, Hkv, D, seed=1)[1:3]
        t = {
            "sdpa_cudnn": timed(lambda: sdpa_step(q, k, v, g, SDPBackend.CUDNN_ATTENTION), reps),
            "sdpa_flash": timed(lambda: sdpa_step(q, k, v, g, SDPBackend.FLASH_ATTENTION), reps),
            "ring_p1_contiguous": timed(lambda: ring_step(q, k, v, g, 0), reps),
            "ring_p1_zigzag": timed(lambda: ring_step(q, k, v, g, 1), reps),
            "ring_p2_rank_compute": timed(lambda: p2_rank_compute(q, k, v, g, kp, vp), reps),
        }
        f1 = causal_flops(L, H, D)          # per GPU, one GPU holding L tokens
        f2 = causal_flops(2 * L, H, D) / 2  # per GPU when two GPUs share 2L tokens
        flops = {n: (f2 if n == "ring_p2_rank_compute" else f1) for n in t}
        row = dict(tokens_per_gpu=L, heads=H, kv_heads=Hkv, head_dim=D, dtype="bfloat16",
                   ms_fwd_bwd=t,
                   tflops=({n: flops[n] / (t[n] * 1e-3) / 1e12 for n in t}),
                   tokens_per_s_per_gpu={n: L / (t[n] * 1e-3) for n in t})
        base = row["tflops"]["sdpa_cudnn"]
        row["efficiency_vs_local_sdpa_1gpu"] = row["tflops"]["ring_p1_zigzag"] / base
        row["efficiency_vs_local_sdpa_2gpu_compute_only"] = row["tflops"]["ring_p2_rank_compute"] / base
        row["efficiency_vs_local_sdpa_2gpu"] = None  # needs two GPUs (issue 11)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v, g, kp, vp
        torch.cuda.empty_cache()
    return rows


def read_doc(path):
    """The JSON document at path, or {} when there is none."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def multi_gpu_key(gpus):
    """Where the P-GPU block lives: "multi_gpu" for the first multi-GPU run (two
    GPUs, which the plots and the scaling model read), "multi_gpu_<P>gpu" beside it
    for larger rings, so a four-GPU run does not replace the two-GPU figures."""
    return "multi_gpu" if gpus == 2 else f"multi_gpu_{gpus}gpu"


def merge_multi_gpu(doc, multi):
    """doc with multi (the P-GPU block) under multi_gpu_key(P), and each one-GPU row
    of the same tokens_per_gpu given the measured "efficiency_vs_local_sdpa_<P>gpu"."""
    doc = copy.deepcopy(doc)
    doc[multi_gpu_key(multi["gpus"])] = multi
    key = f"efficiency_vs_local_sdpa_{multi['gpus']}gpu"
    measured = {r["tokens_per_gpu"]: r.get(key) for r in multi.get("rows", [])}
    for r in doc.get("results", []):
        if r.get("tokens_per_gpu") in measured:
            r[key] = measured[r["tokens_per_gpu"]]
    if isinstance(doc.get("note"), str):
        doc["note"] = doc["note"].replace(
            "the measured 2-GPU run is pending",
            "the measured multi-GPU rings (ravensp and PyTorch context parallelism) are under multi_gpu")
    return doc


def init_torch_distributed(world, rank, local, device):
    """torch.distributed (NCCL) for PyTorch's context parallelism; under mpirun
    its env:// rendezvous comes from OMPI_COMM_WORLD_* and MASTER_ADDR/PORT."""
    import torch.distributed as dist

    if "OMPI_COMM_WORLD_SIZE" in os.environ:
        os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"] = (
            str(rank), str(world), str(local))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
    if not dist.is_initialized():
        dist.init_process_group("nccl", device_id=device)


def restore_sdpa():
    """Undo context_parallel's patch of F.scaled_dot_product_attention and its DTensor
    handlers if an exception left them in place (its context manager has no finally)."""
    if F.scaled_dot_product_attention is SDPA:
        return
    F.scaled_dot_product_attention = SDPA
    try:
        from torch.distributed.tensor.experimental._context_parallel._attention import (
            _disable_cp_dtensor_dispatcher)
        _disable_cp_dtensor_dispatcher()
    except Exception as e:  # noqa: BLE001  (best effort; the patch itself is undone)
        print(f"restore_sdpa: {e!r}", file=sys.stderr, flush=True)


TORCH_CP_BACKENDS = (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION))


def torch_cp_setup(P):
    """PyTorch's context parallelism on a 1-D mesh of the P ranks: (mesh, info)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.experimental._context_parallel import _attention as cp_attn

    mesh = init_device_mesh("cuda", (P,), mesh_dim_names=("cp",))
    opts = cp_attn._cp_options
    rotate = getattr(getattr(opts, "rotate_method", None), "name", None)
    info = dict(api=("torch.distributed.tensor.experimental.context_parallel(mesh, buffers=[q, k, v, "
                     "dout] as [1, H, P*L, D], buffer_seq_dims=[2, 2, 2, 2], no_restore_buffers=all), "
                     "then F.scaled_dot_product_attention(q, k, v, is_causal=True) and backward on the "
                     "local shards under sdpa_kernel(backend)"),
                mesh="init_device_mesh('cuda', (P,))",
                rotate={"ALL_GATHER": "allgather", "ALL_TO_ALL": "alltoall"}.get(rotate, rotate),
                rotate_backward_dkv="alltoall",
                load_balance=("head-tail (rank r holds chunks r and 2P-1-r of 2P, as ravensp's zigzag)"
                              if getattr(opts, "enable_load_balance", None) else "none"),
                convert_to_f32=getattr(opts, "convert_to_f32", None),
                backend=None, error=None)
    return mesh, info


def torch_cp_measure(mesh, glob, reps, ours=None):
    """PyTorch's context-parallel SDPA fwd+bwd on this rank's shard of the global
    q, k, v, dout [1, S, H, D]: (median ms, backend name, max |out - ours| or None,
    error string or None). The buffers are sharded once, on entering the context;
    the backend is the first of cuDNN, flash, efficient that runs."""
    from torch.distributed.tensor.experimental import context_parallel

    bufs = [t.transpose(1, 2).contiguous() for t in glob]  # [1, H, S, D]: CP's seq dim is 2
    gqa = {"enable_gqa": True} if bufs[1].shape[1] != bufs[0].shape[1] else {}
    ms = name = diff = err = None
    try:
        with context_parallel(mesh, buffers=bufs, buffer_seq_dims=[2] * len(bufs),
                              no_restore_buffers=set(bufs)):
            try:  # inside the context so that it exits (and unpatches) normally
                q, k, v, g = bufs  # now this rank's head-tail shards [1, H, L, D]

                def step(backend):
                    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
                    with sdpa_kernel(backend):
                        o = F.scaled_dot_product_attention(*leaves, is_causal=True, **gqa)
                    o.backward(g)
                    return o

                tried = []
                for n, b in TORCH_CP_BACKENDS:
                    try:
                        o = step(b)
                        name = n
                        break
                    except Exception as e:  # noqa: BLE001  (next backend)
                        tried.append(f"{n}: {type(e).__name__}: {e}"[:400])
                if name is None:
                    raise RuntimeError("no SDPA backend ran under context_parallel; " + " | ".join(tried))
                if ours is not None:
                    diff = (o.detach().transpose(1, 2).float() - ours.float()).abs().max().item()
                del o
                ms = timed(lambda: step(dict(TORCH_CP_BACKENDS)[name]), reps)
            except Exception as e:  # noqa: BLE001
                err = f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001  (entering or leaving the context)
        err = err or f"{type(e).__name__}: {e}"
    finally:
        restore_sdpa()
    return ms, name, diff, err


def run_multi(lengths, H, Hkv, D, reps, world, rank, local, launcher, with_torch_cp=True):
    """The P-GPU rings, one process per GPU: the "multi_gpu" block (on every rank)."""
    import ravensp.distributed as rd

    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    group = rd.init_from_env("zigzag", device)
    P = group.size
    if P != world:
        raise RuntimeError(f"run_multi: the SP group has {P} ranks but the launcher started {world}")
    say = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)

    mesh = cp_info = None
    if with_torch_cp:
        try:
            init_torch_distributed(world, rank, local, device)
            mesh, cp_info = torch_cp_setup(P)
        except Exception as e:  # noqa: BLE001
            cp_info = dict(api=None, backend=None, rotate=None, error=f"{type(e).__name__}: {e}")
            print(f"rank {rank}: torch context parallelism unavailable: {cp_info['error']}",
                  file=sys.stderr, flush=True)

    key = f"efficiency_vs_local_sdpa_{P}gpu"
    check = {}
    rows = []
    for i, L in enumerate(lengths):
        glob = inputs(P * L, H, Hkv, D)  # q, k, v, dout of the whole sequence, the same on every rank
        q, k, v, g = [group.shard(t, 1).contiguous() for t in glob]  # zigzag, L tokens each
        scale = D ** -0.5
        ours = None
        if i == 0:  # correctness before timing, at the smallest L
            with torch.no_grad():
                ours = OPS.ring_attention(q, k, v, scale, True, 0, None, group.handle, group.layout)
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    ref = SDPA(*[t.transpose(1, 2) for t in glob[:3]], is_causal=True,
                               enable_gqa=Hkv != H).transpose(1, 2)
                d = (ours.float() - group.shard(ref.contiguous(), 1).float()).abs().max().item()
            del ref
            check["tokens_per_gpu"] = L
            check["ravensp_vs_full_sdpa_max_abs_diff"] = slowest(group, [d])[0]
            say(f"check L={L}: max |ravensp ring - cuDNN SDPA of all {P * L} tokens| = "
                f"{check['ravensp_vs_full_sdpa_max_abs_diff']}")
        med = {
            "sdpa_cudnn_local": timed(lambda: sdpa_step(q, k, v, g, SDPBackend.CUDNN_ATTENTION), reps),
            "ring_ravensp": timed(lambda: ring_step(q, k, v, g, group.layout, group.handle), reps),
        }
        cp_err = cp_info.get("error") if cp_info else "skipped (--no-torch-cp)"
        cp_backend = None
        if mesh is not None:
            ms, cp_backend, diff, cp_err = torch_cp_measure(mesh, glob, reps, ours)
            med["ring_torch_cp"] = ms
            if cp_err:
                print(f"rank {rank}: ring_torch_cp at L={L} failed: {cp_err}", file=sys.stderr, flush=True)
        else:
            med["ring_torch_cp"] = diff = None
        if i == 0 and with_torch_cp:  # every rank gathers, with or without a torch CP result
            check["ravensp_vs_torch_cp_max_abs_diff"] = slowest(group, [diff])[0]
            say(f"check L={L}: max |ravensp ring - torch context parallel| = "
                f"{check['ravensp_vs_torch_cp_max_abs_diff']}")
        del glob, ours
        names = list(med)
        every = group.all_gather(torch.tensor([float("nan") if med[n] is None else med[n] for n in names],
                                              dtype=torch.float64, device="cuda"))
        ranks = {n: [None if x != x else x for x in every[:, i].tolist()] for i, n in enumerate(names)}
        t = {n: None if None in r else max(r) for n, r in ranks.items()}  # the slowest rank's
        flops = {n: causal_flops(L, H, D) if n == "sdpa_cudnn_local" else causal_flops(P * L, H, D) / P
                 for n in t}
        tf = {n: None if t[n] is None else flops[n] / (t[n] * 1e-3) / 1e12 for n in t}
        row = dict(tokens_per_gpu=L, gpus=P, global_tokens=P * L, heads=H, kv_heads=Hkv, head_dim=D,
                   dtype="bfloat16", layout="zigzag", ms_fwd_bwd=t, ms_fwd_bwd_per_rank=ranks, tflops=tf,
                   tokens_per_s_per_gpu={n: None if t[n] is None else L / (t[n] * 1e-3) for n in t})
        base = tf["sdpa_cudnn_local"]
        row[key] = tf["ring_ravensp"] / base
        row[f"torch_cp_{key}"] = None if tf["ring_torch_cp"] is None else tf["ring_torch_cp"] / base
        row["speedup_vs_torch_cp"] = (None if t["ring_torch_cp"] is None
                                      else t["ring_torch_cp"] / t["ring_ravensp"])
        row["torch_cp_backend"] = cp_backend
        row["torch_cp_error"] = cp_err
        if cp_info is not None and cp_backend:
            cp_info["backend"] = cp_backend
        rows.append(row)
        say(json.dumps(row))
        del q, k, v, g
        torch.cuda.empty_cache()

    if cp_info is not None and cp_info.get("error") is None:
        errs = [r["torch_cp_error"] for r in rows if r["torch_cp_error"]]
        cp_info["error"] = errs[0] if errs else None
    multi = dict(gpus=P, launcher=launcher, device=torch.cuda.get_device_name(device),
                 torch=torch.__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds"),
                 note=("forward+backward of causal attention on P*L tokens, L per GPU; each figure is the "
                       "slowest rank's median; FLOPs per GPU = causal_flops(P*L)/P, the local SDPA's "
                       "causal_flops(L); efficiency = ring TFLOP/s per GPU / local cuDNN SDPA TFLOP/s; "
                       "speedup_vs_torch_cp = torch CP ms / ravensp ms"),
                 check=check, torch_cp=cp_info, rows=rows)
    group.barrier()
    try:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception as e:  # noqa: BLE001
        print(f"rank {rank}: destroy_process_group: {e!r}", file=sys.stderr, flush=True)
    return multi


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="32768,65536,131072", help="tokens per GPU, comma-separated")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-torch-cp", action="store_true",
                    help="multi-GPU mode: leave PyTorch's context parallelism out")
    ap.add_argument("--out", default="docs/benchmarks/ring_attention.json")
    return ap.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    lengths = [int(x) for x in a.lengths.split(",")]
    world, rank, local, launcher = launch_world()
    if world > 1:
        multi = run_multi(lengths, a.heads, a.kv_heads, a.head_dim, a.reps, world, rank, local,
                          launcher, with_torch_cp=not a.no_torch_cp)
        if rank == 0:
            doc = merge_multi_gpu(read_doc(a.out), multi)
            with open(a.out, "w") as f:
                json.dump(doc, f, indent=1)
        return
    rows = run(lengths, a.heads, a.kv_heads, a.head_dim, a.reps)
    doc = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
               note=("FLOP-based efficiency: attention FLOP/s per GPU over the single-GPU cuDNN "
                     "SDPA's at the same tokens per GPU; 2gpu_compute_only leaves the K/V transfer "
                     "out (it overlaps the compute in the ring); the measured 2-GPU run is pending"),
               results=rows)
    old = read_doc(a.out)
    for key in [k for k in old if k.startswith("multi_gpu")]:  # a one-GPU rerun keeps them
        doc = merge_multi_gpu(doc, old[key])
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
