"""A short training run of one Raven layer: a student RavenAttention learns to
reproduce a fixed teacher's outputs on random sequences. Runs on the GPU when one
is present, else on the CPU, and prints the loss falling and the throughput.

    python -m ravensp.examples.layer_demo [--steps 30] [--seq-len 512]
"""
from __future__ import annotations

import argparse
import time

import torch

from ravensp.nn import RavenAttention


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    on_gpu = args.device.startswith("cuda")
    # Head dim hidden/2 = 64 and 32 slots: shapes the CUDA kernels support.
    cfg = dict(hidden_size=args.hidden, num_heads=2, num_slots=32, topk=4, layer_idx=0)
    teacher = RavenAttention(**cfg).to(args.device).eval()
    student = RavenAttention(**cfg).to(args.device).train()
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    first = last = None
    start = time.perf_counter()
    for step in range(args.steps):
        x = torch.randn(args.batch, args.seq_len, args.hidden, device=args.device)
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=on_gpu):
            target = teacher(x)[0].float()
        student.gumbel_step = step
        with torch.autocast("cuda", torch.bfloat16, enabled=on_gpu):
            out = student(x)[0].float()
        loss = torch.nn.functional.mse_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {last:.5f}", flush=True)
    if on_gpu:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens = args.steps * args.batch * args.seq_len
    print(f"device {args.device}: {args.steps} steps, loss {first:.5f} -> {last:.5f}, "
          f"{tokens / elapsed:,.0f} tokens/s (forward+backward, teacher included)")
    return 0 if last < first else 1


if __name__ == "__main__":
    raise SystemExit(main())
