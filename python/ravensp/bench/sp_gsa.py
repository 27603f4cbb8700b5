"""SP Raven layer benchmark: forward+backward tokens/s per GPU of RavenAttention
through the SP GSA op (LASP-2 and LASP-1) against the same layer without SP, at
64K, 256K and 512K tokens per GPU. The exposed communication time is the SP
time minus the non-SP time of the same work (CUDA events, median after warm-up).

One GPU: `python -m ravensp.bench.sp_gsa --out docs/benchmarks/sp_gsa.json`
(a one-rank NCCL group: the SP code path with a trivial exchange).
Several GPUs: run one process per GPU under mpirun; rank 0 writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import ravensp.distributed as rd
from ravensp.bench.timing import cuda_time_ms
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--tokens", type=int, nargs="*", default=TOKENS_PER_GPU)
    ap.add_argument("--slots", type=int, default=64)
    args = ap.parse_args(argv)
    launched = os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("WORLD_SIZE")
    local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("LOCAL_RANK", 0)))
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    group = rd.init_from_env("zigzag", device) if launched else rd.init_single(device, "zigzag")
    P = group.size
    torch.manual_seed(0)
    cfg = dict(hidden_size=1024, num_heads=4, num_slots=args.slots, topk=32, layer_idx=0)
    layer = RavenAttention(**cfg).to(device).train()
    records = []
    for T in args.tokens:
        x = torch.randn(1, T, 1024, device=device)
        w = torch.randn(1, T, 1024, device=device)
        layer.sp_group = None
        torch.cuda.reset_peak_memory_stats()
        t_local = time_fwd_bwd(layer, x, w)
        mem_local = torch.cuda.max_memory_allocated() / 2**30
        for exchange in ("lasp2", "lasp1"):
            layer.sp_group, layer.sp_exchange = group, exchange
            torch.cuda.reset_peak_memory_stats()
            t_sp = time_fwd_bwd(layer, x, w)
            rec = dict(gpus=P, tokens_per_gpu=T, exchange=exchange, slots=args.slots,
                       ms_fwd_bwd=round(t_sp, 3), ms_fwd_bwd_without_sp=round(t_local, 3),
                       exposed_comm_ms=round(t_sp - t_local, 3),
                       tokens_per_s_per_gpu=round(T / (t_sp / 1e3)),
                       peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                       peak_mem_gib_without_sp=round(mem_local, 2))
            records.append(rec)
            if group.rank == 0:
                print(json.dumps(rec), flush=True)
    layer.sp_group = None
    if group.rank == 0 and args.out:
        doc = dict(machine=torch.cuda.get_device_name(device), date=time.strftime("%Y-%m-%d"),
                   torch=torch.__version__, layer=cfg, records=records,
                   weak_scaling_efficiency_2gpu=None,
                   note="1-GPU figures: the SP path with a one-rank NCCL group; the 2-GPU "
                        "run (weak scaling) waits for a two-GPU machine (issue 11)")
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
