#!/usr/bin/env bash
# Builds without the C++ tests and profiles the SP GSA
# path on one GPU (python -m ravensp.bench.sp_overhead). Log under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/ravensp-out}
mkdir -p "$OUT"
export RAVENSP_SKIP_APT=1 TORCH_CUDA_ARCH_LIST=9.0a CMAKE_BUILD_PARALLEL_LEVEL=16
export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++   # see device-test.sh
export RAVENSP_BUILD=${RAVENSP_BUILD:-$PWD/build/device}
export RAVENSP_CMAKE_ARGS="-Ccmake.define.RAVENSP_WITH_TESTS=OFF"
bash launch/setup.sh > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
python3 -m ravensp.bench.sp_overhead "$@" 2>&1 | tee "$OUT/sp_overhead.txt"
