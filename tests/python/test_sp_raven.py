"""RavenAttention(sp_group=...) on 2, 3, 4 and 8 CPU ranks under mpirun (and on 2
ranks launched torchrun-style, over the TCP backend) equals the
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


@pytest.mark.parametrize("ranks", [2, 3, 4, 8])
def test_sp_raven_layer_equals_unsharded(ranks):
    res = mpirun(ranks, WORKER)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert out.count("all SP RavenAttention checks passed") == ranks, out[-4000:]


def test_sp_raven_layer_under_torchrun_environment():
    """Two processes with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT, no MPI runtime:
    ravensp.distributed.init_from_env bootstraps the TCP backend through its store."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OMPI_", "PMIX_", "PMI_", "SLURM_"))}
        env.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), RAVENSP_STORE_PORT=str(port), OMP_NUM_THREADS="1",
                   RAVENSP_COMM_TIMEOUT_S="120")
        procs.append(subprocess.Popen([sys.executable, WORKER], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {rank}:\n{out[-4000:]}"
        assert "all SP RavenAttention checks passed" in out, out[-4000:]
