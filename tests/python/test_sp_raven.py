"""RavenAttention(sp_group=...) on 2, 3 and 4 CPU ranks under mpirun equals the
unsharded layer in fp64: output, input gradient and every parameter gradient,
both layouts, LASP-2 and LASP-1, packed documents spanning ranks, RoPE with
global positions and Gumbel noise keyed by global positions (training mode)."""
import os
import shutil
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "mpi", "raven_sp_worker.py")


def mpirun(n, script, timeout=300):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not found: multi-rank tests need an MPI launcher")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAVENSP_COMM_TIMEOUT_S="120")
    cmd = ["mpirun", "-np", str(n), "--oversubscribe", "--allow-run-as-root",
           sys.executable, script]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_sp_raven_layer_equals_unsharded(ranks):
    res = mpirun(ranks, WORKER)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert out.count("all SP RavenAttention checks passed") == ranks, out[-4000:]
