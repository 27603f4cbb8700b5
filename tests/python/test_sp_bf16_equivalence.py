"""bf16 sequence parallelism on 2 and 8 ranks (tests/python/mpi/sp_bf16_worker.py): the SP
shard of RavenAttention (LASP-2), sp_gsa with an initial state, ring attention
(GQA, window, packed documents) and a Raven + SPAttention hybrid block, in both
layouts, may differ from the fp64 truth by at most twice what the unsharded bf16
path does plus one bf16 ulp. On 2 and 8 CPU ranks (MPI host group, short sequences)
here, and at full size on 2 CUDA GPUs over NCCL where present.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

WORKER = os.path.join(os.path.dirname(__file__), "mpi", "sp_bf16_worker.py")
PASSED = "all bf16 SP checks passed"


def run_worker(ranks, *args, env=None, timeout=600):
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec not found: multi-rank tests need an MPI launcher")
    try:
        import ravensp.distributed  # noqa: F401
    except ImportError:
        pytest.skip("ravensp.distributed is not available in this build")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAVENSP_COMM_TIMEOUT_S="120", **(env or {}))
    cmd = ["mpiexec", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root",
           sys.executable, WORKER, *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert out.count(PASSED) == ranks, out[-6000:]


@pytest.mark.parametrize("ranks", [2, 8])
def test_bf16_sp_on_cpu_ranks(ranks):
    # No visible GPU, so the worker takes CPU ranks even on a GPU host. Eight ranks
    # is issue 9's eight-GPU count on the MPI host group (about 16 s on two cores).
    run_worker(ranks, "--small", env={"CUDA_VISIBLE_DEVICES": ""}, timeout=300)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_bf16_sp_on_two_gpus():
    run_worker(2)
