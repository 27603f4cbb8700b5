#!/usr/bin/env bash
# What every session runs on the GPU machine (device tool): the same setup and
# test suite as CI, on a machine whose torch is the CUDA build, so the CUDA
# kernels, the GPU tests and the CPU ops are all exercised. Logs go to $OUT.
# Carry third_party (Boost.Program_options sources: the machine has the headers
# but not the compiled library).
set -uo pipefail
OUT=${OUT:-/tmp/ravensp-out}
mkdir -p "$OUT"
export RAVENSP_BUILD=${RAVENSP_BUILD:-$PWD/build/device}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  nvcc --version | tail -1; cmake --version | head -1
} 2>&1 | tee "$OUT/machine.txt"
start=$(date +%s)
bash launch/test.sh "$@" 2>&1 | tee "$OUT/test.log"
rc=${PIPESTATUS[0]}
echo "device-test: rc=$rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/test.log"
exit "$rc"
