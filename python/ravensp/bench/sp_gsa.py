"""SP Raven layer benchmark: forward+backward tokens/s per GPU of RavenAttention
through the SP GSA op (LASP-2 and LASP-1) at 64K, 256K and 512K tokens per GPU,
measured side by side in one run against two single-GPU baselines on each GPU:
the plain layer (no SP) and the same SP path over a one-rank NCCL group.

Weak scaling (fixed tokens per GPU): `weak_scaling_efficiency_<P>gpu` is the
one-rank SP time over the P-rank SP time (LASP-2), per GPU; the exposed
communication time is the P-rank time minus the one-rank time of the same SP
code, so it holds the all-gathers, their waits and the skew between ranks.
Every time is a median of CUDA-event timings after warm-up, then the maximum
over ranks (the slowest rank sets the step).

Where the exchange is exposed: the bare sp_gsa op at a short shard (256 tokens
per GPU, one head) for LASP-2 and LASP-1, where the kernels take microseconds
and the step time is the exchange's latency plus the op's fixed costs
(`latency` records, median of many calls).

One GPU: `python -m ravensp.bench.sp_gsa --out docs/benchmarks/sp_gsa.json`.
P GPUs: one process per GPU under mpirun (or torchrun); rank 0 writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import ravensp.distributed as rd
from ravensp.bench.timing import cuda_time_ms, launch_world, slowest
from ravensp.nn import RavenAttention

TOKENS_PER_GPU = [65536, 262144, 524288]


def time_fwd_bwd(layer, x, w, repeats=5, warmup=2):
    def step():
        xg = x.detach().requires_grad_()
        with torch.autocast("cuda", torch.bfloat16):
            o = layer(xg)[0]
        (o.float() * w).sum().backward()
        layer.zero_grad(set_to_none=True)

    return cuda_time_ms(step, reps=repeats, warmup=warmup)


def measure(layer, x, w, group):
    """(ms, peak GiB) of fwd+bwd with layer.sp_group = group (None: no SP)."""
    layer.sp_group = group
    torch.cuda.reset_peak_memory_stats()
    ms = time_fwd_bwd(layer, x, w)
    return ms, torch.cuda.max_memory_allocated() / 2**30


def _overlap(prof):
    """(nccl kernels, their µs, µs of them concurrent with another kernel) of a trace."""
    kernels = [(e.time_range.start, e.time_range.end, e.name) for e in prof.events()
               if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > 0]
    comm = [k for k in kernels if "nccl" in k[2].lower()]
    merged = []  # compute kernels' busy intervals, merged (they may run concurrently)
    for a, b in sorted((a, b) for a, b, n in kernels if "nccl" not in n.lower()):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    other = merged
    total = hidden = 0.0
    for a, b, _ in comm:
        total += b - a
        for c, d in other:
            if c >= b:
                break
            hidden += max(0.0, min(b, d) - max(a, c))
    return len(comm), total, hidden


def profile(layer, x, w, one, group):
    """Where the SP layer's extra time goes: kernel time per name, unsharded vs SP
    on one GPU; with several ranks also how much of the NCCL kernels' time ran
    alongside compute kernels (the exchange hidden under the split passes)."""
    runs = [("unsharded", None), ("sp lasp2, one GPU", one)]
    if group.size > 1:
        runs.append((f"sp lasp2, {group.size} GPUs", group))
    for name, g in runs:
        layer.sp_group = g
        time_fwd_bwd(layer, x, w, repeats=1, warmup=2)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                                torch.profiler.ProfilerActivity.CPU]) as prof:
            time_fwd_bwd(layer, x, w, repeats=1, warmup=0)
        if group.rank != 0:
            continue
        print(f"--- {name}")
        print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=25,
                                        max_name_column_width=60))
        if g is not None and g.size > 1:
            n, total, hidden = _overlap(prof)
            print(f"overlap: {n} NCCL kernels, {total:.1f} us, {hidden:.1f} us of it alongside "
                  f"compute kernels ({100 * hidden / max(total, 1e-9):.0f}%)", flush=True)
    layer.sp_group = None


def latency(group, one, reps=200, warmup=20):
    """fwd+bwd µs of the bare sp_gsa op on a 256-token shard (B1 H1 K=V=64 M=32,
    bf16), LASP-2 and LASP-1, on one GPU and on the group: the regime where the
    exchange cannot hide under the kernels."""
    L, dev = 256, torch.device("cuda", torch.cuda.current_device())
    gen = torch.Generator(device=dev).manual_seed(1)
    def rnd(*shape):
        return torch.randn(*shape, device=dev, generator=gen).to(torch.bfloat16)
    q, k, v = rnd(1, L, 1, 64), rnd(1, L, 1, 64), rnd(1, L, 1, 64)
    g = (-0.1 * torch.rand(1, L, 1, 32, device=dev, generator=gen)).to(torch.bfloat16)
    s = (1 - g.float().exp()).to(torch.bfloat16)
    ins = [t.requires_grad_() for t in (q, k, v, s, g)]
    out = {}
    for exchange in ("lasp2", "lasp1"):
        for name, grp in (("1", one), (str(group.size), group)):
            def step():
                o = rd.sp_gsa(*ins, grp, exchange=exchange)
                torch.autograd.grad(o.float().sum(), ins)
            out[f"{exchange}_{name}"] = 1e3 * cuda_time_ms(step, reps=reps, warmup=warmup)
    names = list(out)
    us = dict(zip(names, slowest(group, [out[n] for n in names])))
    recs = []
    for exchange in ("lasp2", "lasp1"):
        for gpus in sorted({1, group.size}):
            recs.append(dict(gpus=gpus, tokens_per_gpu=L, exchange=exchange,
                             us_fwd_bwd=round(us[f"{exchange}_{gpus}"], 1),
                             us_exchange_exposed=round(us[f"{exchange}_{gpus}"] -
                                                       us[f"{exchange}_1"], 1)))
    return recs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--tokens", type=int, nargs="*", default=TOKENS_PER_GPU)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--profile", action="store_true",
                    help="print the CUDA time per kernel of one fwd+bwd without and with SP "
                         "(first token count, one GPU) and exit")
    args = ap.parse_args(argv)
    _, _, local, launched = launch_world()
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    group = rd.init_from_env("zigzag", device) if launched else rd.init_single(device, "zigzag")
    P = group.size
    one = rd.init_single(device, "zigzag") if P > 1 else group
    torch.manual_seed(0)
    cfg = dict(hidden_size=1024, num_heads=4, num_slots=args.slots, topk=32, layer_idx=0)
    layer = RavenAttention(**cfg).to(device).train()
    records, efficiency = [], {}
    for T in args.tokens:
        x = torch.randn(1, T, 1024, device=device)
        w = torch.randn(1, T, 1024, device=device)
        if args.profile:
            profile(layer, x, w, one, group)
            return 0
        runs = {"none": measure(layer, x, w, None)}
        for exchange in ("lasp2", "lasp1"):
            layer.sp_exchange = exchange
            runs[f"{exchange}_1"] = measure(layer, x, w, one)
            if P > 1:
                runs[f"{exchange}_{P}"] = measure(layer, x, w, group)
        layer.sp_group = None
        names = list(runs)
        ms = dict(zip(names, slowest(group, [runs[n][0] for n in names])))
        gib = dict(zip(names, slowest(group, [runs[n][1] for n in names])))
        for exchange in ("lasp2", "lasp1"):
            for gpus in sorted({1, P}):
                key, base = f"{exchange}_{gpus}", f"{exchange}_1"
                rec = dict(gpus=gpus, tokens_per_gpu=T, exchange=exchange, slots=args.slots,
                           ms_fwd_bwd=round(ms[key], 3),
                           ms_fwd_bwd_without_sp=round(ms["none"], 3),
                           ms_fwd_bwd_sp_1gpu=round(ms[base], 3),
                           sp_overhead_ms=round(ms[base] - ms["none"], 3),
                           exposed_comm_ms=round(ms[key] - ms[base], 3),
                           tokens_per_s_per_gpu=round(T / (ms[key] / 1e3)),
                           weak_scaling_efficiency=round(ms[base] / ms[key], 4),
                           efficiency_vs_plain_layer=round(ms["none"] / ms[key], 4),
                           peak_mem_gib=round(gib[key], 2),
                           peak_mem_gib_without_sp=round(gib["none"], 2))
                records.append(rec)
                if group.rank == 0:
                    print(json.dumps(rec), flush=True)
        if P > 1:
            efficiency[str(T)] = round(ms["lasp2_1"] / ms[f"lasp2_{P}"], 4)
        del x, w
        torch.cuda.empty_cache()
    lat = latency(group, one)
    if group.rank == 0:
        for rec in lat:
            print(json.dumps(rec), flush=True)
    if group.rank == 0 and args.out:
        doc = dict(latency=lat, machine=f"{torch.cuda.get_device_name(device)} x{P}", date=time.strftime("%Y-%m-%d"),
                   torch=torch.__version__, gpus=P, layer=cfg, records=records,
                   method=("fwd+bwd under bf16 autocast, median of 5 CUDA-event timings after 2 "
                           "warm-ups, max over ranks; weak scaling = one-rank SP time / P-rank SP "
                           "time at the same tokens per GPU; exposed_comm_ms = P-rank minus "
                           "one-rank SP time"))
        if P > 1:
            doc[f"weak_scaling_efficiency_{P}gpu"] = min(efficiency.values())
            doc[f"weak_scaling_efficiency_{P}gpu_by_tokens"] = efficiency
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
