#!/usr/bin/env bash
# The whole test suite: builds (via setup.sh), then CTest (GoogleTest, including
# the multi-rank suites under mpirun on CPU ranks) and pytest. GPU tests skip
# with a stated reason when no GPU is present.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$RAVENSP_ROOT/launch/setup.sh"
source "$RAVENSP_ROOT/launch/env.sh"
cd "$RAVENSP_ROOT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # ranks share 2 cores in CI
# Both suites always run; the exit status is the first failure's.
rc=0
if [ -f "$RAVENSP_BUILD/CTestTestfile.cmake" ] && grep -q "RAVENSP_WITH_TESTS:BOOL=ON" "$RAVENSP_BUILD/CMakeCache.txt"; then
  ctest --test-dir "$RAVENSP_BUILD" --output-on-failure -j2 || rc=$?
else
  echo "test: C++ tests were not built (RAVENSP_WITH_TESTS=OFF): skipping CTest" >&2
fi
"$PY" -m pytest -q -rs tests/python "$@" || { r=$?; [ "$rc" = 0 ] && rc=$r; }
exit "$rc"
