"""What the GPU benchmarks share: the one timer (CUDA events around fn(), median
of the repeats after warm-up runs, which absorb autotuning and allocator growth),
the launcher's view of this process, and the slowest rank's figures."""
from __future__ import annotations

import os
import statistics
from typing import Callable, List, Optional, Sequence

import torch


def cuda_time_ms(fn: Callable[[], object], reps: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def launch_world():
    """(world size, rank, local rank, launcher) from mpirun's or torchrun's
    environment; (1, 0, 0, None) for a plain run."""
    env = os.environ
    if "OMPI_COMM_WORLD_SIZE" in env:
        return (int(env["OMPI_COMM_WORLD_SIZE"]), int(env["OMPI_COMM_WORLD_RANK"]),
                int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", 0)), "mpirun")
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["WORLD_SIZE"]), int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), "torchrun"
    return 1, 0, 0, None


def slowest(group, values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Element-wise maximum of `values` over the group's ranks (the slowest rank
    sets a step); None where any rank has None. One all-gather on the group."""
    t = torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float64,
                     device=torch.device("cuda", torch.cuda.current_device()))
    every = group.all_gather(t)  # [P, len(values)]
    return [None if bool(torch.isnan(col).any()) else float(col.max()) for col in every.unbind(1)]
