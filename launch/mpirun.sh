#!/usr/bin/env bash
# ravensp-train on N ranks under Open MPI: launch/mpirun.sh N [ravensp-train options...]
# One rank per GPU when GPUs are present (each picks cuda:<local rank>), else CPU ranks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
n=${1:?usage: launch/mpirun.sh NRANKS [options...]}; shift
bin=${RAVENSP_TRAIN_BIN:-$RAVENSP_BUILD/bin/ravensp-train}
[ -x "$bin" ] || { echo "mpirun.sh: $bin not built; run launch/setup.sh" >&2; exit 1; }
root_flag=(); [ "$(id -u)" = 0 ] && root_flag=(--allow-run-as-root)
# Forward the knobs that are set (mpirun warns about -x of an unset variable);
# NVLink multicast stays off on every rank (env.sh sets these).
env_flags=()
for v in RAVENSP_COMM_TIMEOUT_S NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS; do
  [ -n "${!v:-}" ] && env_flags+=(-x "$v")
done
# Ranks share the cores: one intra-op thread each unless told otherwise.
exec mpirun -np "$n" --oversubscribe "${root_flag[@]}" -x OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" \
  "${env_flags[@]}" "$bin" "$@"
