"""Ring attention benchmark (issue 6, deliverable 4): forward+backward per GPU.

On one GPU: torch SDPA (cuDNN backend, the baseline; flash for reference) and
ravensp's ring_attention with no SP group (P = 1, contiguous and zigzag tiling),
plus the compute one rank of a 2-GPU zigzag ring does (its diagonal step and one
half block, merged by LSE, fwd and bwd passes called as the ring calls them) with
the transfer left out. Efficiency compares attention FLOP/s per GPU with the
baseline's at the same tokens per GPU. The measured 2-GPU figure
("efficiency_vs_local_sdpa_2gpu") needs two GPUs and stays null until then.

    python -m ravensp.bench.ring_attention --out docs/benchmarks/ring_attention.json
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import ravensp  # noqa: F401  (registers torch.ops.ravensp.*)

from ravensp.bench.timing import cuda_time_ms

OPS = torch.ops.ravensp


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


def ring_step(q, k, v, g, layout):
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    o = OPS.ring_attention(*leaves, q.shape[-1] ** -0.5, True, 0, None, 0, layout)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="32768,65536,131072")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="docs/benchmarks/ring_attention.json")
    a = ap.parse_args()
    rows = run([int(x) for x in a.lengths.split(",")], a.heads, a.kv_heads, a.head_dim, a.reps)
    doc = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
               note=("FLOP-based efficiency: attention FLOP/s per GPU over the single-GPU cuDNN "
                     "SDPA's at the same tokens per GPU; 2gpu_compute_only leaves the K/V transfer "
                     "out (it overlaps the compute in the ring); the measured 2-GPU run is pending"),
               results=rows)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
