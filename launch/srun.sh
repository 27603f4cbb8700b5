#!/usr/bin/env bash
# ravensp-train under Slurm: launch/srun.sh [srun options] -- [ravensp-train options...]
# e.g. launch/srun.sh -N 1 --ntasks-per-node=8 --gpus-per-node=8 -- --config configs/long-1m.cfg
# Ranks bootstrap from MPI (PMIx/PMI) as under mpirun.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bin=${RAVENSP_TRAIN_BIN:-$RAVENSP_BUILD/bin/ravensp-train}
srun_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do srun_args+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
exec srun --mpi=pmix "${srun_args[@]}" "$bin" "$@"
