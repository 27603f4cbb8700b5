"""Where the SP GSA path spends its time on one GPU: the chunked op alone with
and without packed pieces (cu_seqlens) and initial states, and a profile of
the SP Raven layer. Prints a table; no files.

    python -m ravensp.bench.sp_overhead [--tokens 65536]
"""
from __future__ import annotations

import argparse
import torch

import ravensp
import ravensp.distributed as rd
from ravensp.bench.timing import cuda_time_ms
from ravensp.nn import RavenAttention


def bench(fn, repeats=5, warmup=2):
    return cuda_time_ms(fn, reps=repeats, warmup=warmup)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=65536)
    args = ap.parse_args(argv)
    T, H, K, M = args.tokens, 4, 256, 64
    dev = torch.device("cuda")
    kw = dict(device=dev, dtype=torch.float32)
    q, k, v = (0.5 * torch.randn(1, T, H, K, **kw) for _ in range(3))
    g = -0.5 * torch.rand(1, T, H, M, **kw) * (torch.rand(1, T, H, M, **kw) < 0.6)
    s = 1 - g.exp()
    ins = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v, s, g)]
    cu = torch.tensor([0, T // 2, T], device=dev)
    h0 = (torch.zeros(1, H, K, M, device=dev), torch.zeros(1, H, M, K, device=dev))
    h0p = (torch.zeros(2, H, K, M, device=dev), torch.zeros(2, H, M, K, device=dev))
    do = torch.randn(1, T, H, K, device=dev, dtype=torch.bfloat16)
    variants = {
        "plain": dict(),
        "initial state": dict(initial_state=h0),
        "2 packed pieces": dict(cu_seqlens=cu),
        "2 pieces + states": dict(cu_seqlens=cu, initial_state=h0p),
    }
    for name, extra in variants.items():
        def fwd():
            return ravensp.chunk_gsa(*ins, scale=1.0, **extra)[0]
        t_f = bench(fwd)
        t_fb = bench(lambda: torch.autograd.backward(fwd(), do))
        print(f"chunk_gsa T={T} {name:20s} fwd {t_f:8.2f} ms  fwd+bwd {t_fb:8.2f} ms", flush=True)
    group = rd.init_single(dev, "zigzag")
    layer = RavenAttention(hidden_size=1024, num_heads=4, num_slots=M, topk=32, layer_idx=0).to(dev)
    x = torch.randn(1, T, 1024, device=dev)

    def step():
        with torch.autocast("cuda", torch.bfloat16):
            o = layer(x.requires_grad_())[0]
        o.float().sum().backward()

    for sp in (None, group):
        layer.sp_group = sp
        print(f"layer {'SP' if sp else 'plain'}: fwd+bwd {bench(step):8.2f} ms", flush=True)
    layer.sp_group = group
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                            torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
