"""GSA kernel benchmark: ravensp's CUDA chunk_gsa beside FLA's Triton chunk_gsa.

Times forward and forward+backward with CUDA events after warm-up (median of
repeats), in one process, on Raven-like inputs (bf16, decay g <= 0 with
s = 1 - exp(g) on a sparse routing weight); each fwd+bwd starts from .grad None,
as a training step does. FLA is used only when
importable (put its carried source on PYTHONPATH). Writes one JSON record per
shape and implementation plus "speedup_fwdbwd_vs_fla" per shape.

    python -m ravensp.bench.kernels --out docs/benchmarks/kernels.json
"""
from __future__ import annotations

import argparse
import json

import torch

import ravensp
from ravensp.bench.timing import cuda_time_ms

SHAPES = [  # (B, H, K, V, M, T)
    (1, 4, 256, 256, 64, 8192),
    (1, 4, 256, 256, 64, 32768),
    (1, 4, 256, 256, 64, 131072),
    (1, 4, 256, 256, 256, 8192),
    (1, 4, 256, 256, 256, 32768),
    (1, 4, 256, 256, 256, 131072),
    (8, 16, 64, 64, 64, 4096),
]
CHUNK = 64


def make_inputs(B, H, K, V, M, T, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    kw = dict(device="cuda", dtype=torch.float32, generator=gen)
    q = 0.5 * torch.randn(B, T, H, K, **kw)
    k = 0.5 * torch.randn(B, T, H, K, **kw)
    v = torch.randn(B, T, H, V, **kw)
    w = torch.rand(B, T, H, M, **kw) * (torch.rand(B, T, H, M, **kw) < 0.6)
    g = -0.5 * torch.rand(B, T, H, M, **kw) * w
    s = 1 - g.exp()
    return [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v, s, g)]


def flops_fwd(B, H, K, V, M, T):
    """Multiply-adds x2 of the chunked forward: intra q k^T and p-s pairs (C per
    token each over K and M), scores q Hk, output p Hv, intra A2 v, and the
    chunk's state updates (k^T W, W^T v)."""
    per_tok = CHUNK * K + K * M + CHUNK * M + M * V + CHUNK * V + K * M + M * V
    return 2.0 * B * H * T * per_tok


def bytes_fwd(B, H, K, V, M, T):
    """Fewest bytes: read q, k, v, s, g (bf16), write o (bf16) and p (fp32)."""
    return B * T * H * (2 * (2 * K + V + 2 * M) + 2 * V + 4 * M)


def bytes_bwd(B, H, K, V, M, T):
    """Read q, k, v, s, g, dO (bf16) and p (fp32); write dq, dk, dv, ds, dg (bf16)."""
    return B * T * H * (2 * (2 * K + 2 * V + 2 * M) + 4 * M + 2 * (2 * K + V + 2 * M))


def time_ms(fn, warmup=3, reps=10):
    return cuda_time_ms(fn, reps=reps, warmup=warmup)


def bench_impl(name, fn, shape, reps):
    B, H, K, V, M, T = shape
    ins = make_inputs(*shape)
    do = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16)

    def fwd():
        with torch.no_grad():
            fn(*ins)

    def fwdbwd():
        # A training step starts from grad None (zero_grad's default); leaving the
        # last repeat's .grad in place would time five elementwise adds into it
        # (about 6% of ravensp's fwd+bwd at T=8K), which neither kernel does.
        for t in ins:
            t.grad = None
        o = fn(*ins)
        torch.autograd.backward(o, do)

    fwd_ms = time_ms(fwd, reps=reps)
    fwdbwd_ms = time_ms(fwdbwd, reps=reps)
    for t in ins:
        t.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fwdbwd()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    out = fn(*ins).detach().float()
    fl = flops_fwd(*shape)
    tokens = B * T
    rec = dict(impl=name, B=B, H=H, K=K, V=V, M=M, T=T, dtype="bfloat16",
               fwd_ms=round(fwd_ms, 4), fwdbwd_ms=round(fwdbwd_ms, 4),
               tokens_per_s_fwdbwd=round(tokens / (fwdbwd_ms * 1e-3)),
               tflops_fwd=round(fl / (fwd_ms * 1e-3) / 1e12, 3),
               tflops_fwdbwd=round(3 * fl / (fwdbwd_ms * 1e-3) / 1e12, 3),
               gbps_fwd=round(bytes_fwd(*shape) / (fwd_ms * 1e-3) / 1e9, 1),
               gbps_fwdbwd=round((bytes_fwd(*shape) + bytes_bwd(*shape)) /
                                 (fwdbwd_ms * 1e-3) / 1e9, 1),
               peak_mem_gib_fwdbwd=round(peak / 2 ** 30, 3))
    del ins, do
    return rec, out


def profile_kernels(shape):
    """Per-kernel CUDA time of ravensp's forward+backward (torch.profiler)."""
    B, H, K, V, M, T = shape
    ins = make_inputs(*shape)
    do = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16)
    def step():
        for t in ins:
            t.grad = None
        torch.autograd.backward(ravensp.chunk_gsa(*ins, scale=1.0)[0], do)
    step()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=90))


def implementations():
    impls = {"ravensp": lambda q, k, v, s, g: ravensp.chunk_gsa(q, k, v, s, g, scale=1.0)[0]}
    try:
        from fla.ops.gsa import chunk_gsa as fla_chunk_gsa
        impls["fla"] = lambda q, k, v, s, g: fla_chunk_gsa(q, k, v, s, g, scale=1.0)[0]
    except ImportError as exc:  # FLA is optional: carried source on PYTHONPATH
        print(f"FLA not importable ({exc}); timing ravensp alone")
    return impls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/benchmarks/kernels.json")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--shapes", default="all", help="'all' or comma list of indices into SHAPES")
    ap.add_argument("--profile", action="store_true", help="per-kernel times of each shape")
    args = ap.parse_args()
    shapes = SHAPES if args.shapes == "all" else [SHAPES[int(i)] for i in args.shapes.split(",")]
    if args.profile:
        for shape in shapes:
            print(f"per-kernel CUDA time, ravensp fwd+bwd, (B, H, K, V, M, T) = {shape}")
            profile_kernels(shape)
    impls = implementations()
    records = []
    device = torch.cuda.get_device_name()
    for shape in shapes:
        outs = {}
        per = {}
        for name, fn in impls.items():
            rec, outs[name] = bench_impl(name, fn, shape, args.reps)
            rec["device"] = device
            records.append(rec)
            per[name] = rec
            print(json.dumps(rec), flush=True)
            torch.cuda.empty_cache()
        if "fla" in per:
            diff = ((outs["ravensp"] - outs["fla"]).abs().max() / outs["fla"].abs().max()).item()
            B, H, K, V, M, T = shape
            summary = dict(impl="summary", B=B, H=H, K=K, V=V, M=M, T=T, device=device,
                           speedup_fwd_vs_fla=round(per["fla"]["fwd_ms"] / per["ravensp"]["fwd_ms"], 3),
                           speedup_fwdbwd_vs_fla=round(per["fla"]["fwdbwd_ms"] /
                                                       per["ravensp"]["fwdbwd_ms"], 3),
                           peak_mem_ratio_vs_fla=round(per["ravensp"]["peak_mem_gib_fwdbwd"] /
                                                       max(per["fla"]["peak_mem_gib_fwdbwd"], 1e-9), 3),
                           max_rel_diff_o_vs_fla=float(f"{diff:.3e}"))
            records.append(summary)
            print(json.dumps(summary), flush=True)
        del outs
        with open(args.out, "w") as f:  # after every shape: a cut-off run keeps its results
            json.dump(dict(device=device, torch=torch.__version__, records=records), f, indent=1)
    print(f"{'shape':>34} {'impl':>8} {'fwd ms':>8} {'fwd+bwd':>8} {'peak GiB':>9}")
    for r in records:
        if r["impl"] == "summary":
            print(f"{'':>34} speedup fwd {r['speedup_fwd_vs_fla']}x fwd+bwd "
                  f"{r['speedup_fwdbwd_vs_fla']}x mem {r['peak_mem_ratio_vs_fla']}x "
                  f"diff {r['max_rel_diff_o_vs_fla']}")
        else:
            sh = f"B{r['B']} H{r['H']} K{r['K']} V{r['V']} M{r['M']} T{r['T']}"
            print(f"{sh:>34} {r['impl']:>8} {r['fwd_ms']:8.3f} {r['fwdbwd_ms']:8.3f} "
                  f"{r['peak_mem_gib_fwdbwd']:9.3f}")


if __name__ == "__main__":
    main()
