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
# The GPU machine has no network: install nothing, and switch off by name the
# parts whose dependencies it lacks (said in the log, never silently).
export RAVENSP_SKIP_APT=1 TORCH_CUDA_ARCH_LIST=9.0a CMAKE_BUILD_PARALLEL_LEVEL=16
# The machine's default /opt/gcc/bin/g++ links libstdc++ statically into every
# library: a C++ exception thrown in one of ours then crashes Python instead of
# raising. The system g++ (13, which nvcc 13 accepts) links it dynamically.
if [ -x /usr/bin/g++ ] && [ -z "${RAVENSP_KEEP_CXX:-}" ]; then
  export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++
  echo "device-test: compilers CC=$CC CXX=$CXX CUDAHOSTCXX=$CUDAHOSTCXX" | tee -a "$OUT/machine.txt"
fi
extra=""
if ! command -v mpirun >/dev/null; then
  echo "device-test: no MPI on this machine: building with RAVENSP_WITH_MPI=OFF (multi-rank tests skip)" | tee -a "$OUT/machine.txt"
  extra+=" -Ccmake.define.RAVENSP_WITH_MPI=OFF"
fi
if [ ! -e /usr/include/gtest/gtest.h ] && [ ! -e /usr/local/include/gtest/gtest.h ]; then
  echo "device-test: no GoogleTest on this machine: building with RAVENSP_WITH_TESTS=OFF (pytest still runs)" | tee -a "$OUT/machine.txt"
  extra+=" -Ccmake.define.RAVENSP_WITH_TESTS=OFF"
fi
export RAVENSP_CMAKE_ARGS="${RAVENSP_CMAKE_ARGS:-}$extra"
start=$(date +%s)
bash launch/test.sh "$@" 2>&1 | tee "$OUT/test.log"
rc=${PIPESTATUS[0]}
echo "device-test: rc=$rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/test.log"
exit "$rc"
