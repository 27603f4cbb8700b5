#!/usr/bin/env bash
# Installs what ravensp needs (apt packages; torch 2.11.0 in a venv outside the
# clone) and builds everything once: C++ libraries, CUDA kernels (sm_90a when
# nvcc is present), the op library, the Python package (editable) and the tests.
# Safe to rerun: installed pieces are reused, the build is incremental.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$RAVENSP_ROOT"

apt_pkgs=()
command -v cmake >/dev/null || apt_pkgs+=(cmake)
command -v ninja >/dev/null || apt_pkgs+=(ninja-build)
command -v g++ >/dev/null || apt_pkgs+=(g++)
command -v mpirun >/dev/null || apt_pkgs+=(openmpi-bin libopenmpi-dev)
[ -e /usr/include/boost/program_options.hpp ] || apt_pkgs+=(libboost-program-options-dev)
[ -e /usr/include/gtest/gtest.h ] || apt_pkgs+=(libgtest-dev)
if [ ${#apt_pkgs[@]} -gt 0 ] && [ "${RAVENSP_SKIP_APT:-0}" = 1 ]; then
  echo "setup: RAVENSP_SKIP_APT=1: not installing ${apt_pkgs[*]}; the build must be told to do without them" >&2
elif [ ${#apt_pkgs[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing ${apt_pkgs[*]} and no apt-get to install them" >&2; exit 1
  fi
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  echo "setup: installing ${apt_pkgs[*]}"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

py_pkgs=("numpy<3" "pytest>=8" "scikit-build-core>=0.10" "pybind11>=2.12" "expecttest" "matplotlib")
if ! ravensp_has_torch "$PY"; then
  echo "setup: creating $RAVENSP_VENV with torch==$RAVENSP_TORCH_VERSION"
  python3 -m venv "$RAVENSP_VENV"
  PY=$RAVENSP_VENV/bin/python
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "torch==$RAVENSP_TORCH_VERSION" "${py_pkgs[@]}"
elif [ "${RAVENSP_SKIP_APT:-0}" != 1 ] && \
     ! "$PY" -c "import numpy, pytest, scikit_build_core, pybind11, expecttest, matplotlib" 2>/dev/null; then
  # A venv from an earlier version of this script: add what it lacks.
  "$PY" -m pip install -q "${py_pkgs[@]}"
fi

# Boost.Program_options sources (kept out of git) when the compiled library is absent.
po_args=()
if [ -d third_party/boost_program_options/src ] && \
   ! ls /usr/lib/*/libboost_program_options.so* >/dev/null 2>&1; then
  po_args+=("-Ccmake.define.RAVENSP_BOOST_PO_SOURCE=$RAVENSP_ROOT/third_party/boost_program_options")
fi

echo "setup: building into $RAVENSP_BUILD with $PY"
"$PY" -m pip install -q --no-build-isolation --no-deps -e . \
  -Cbuild-dir="$RAVENSP_BUILD" \
  -Ccmake.build-type=Release \
  -Ccmake.define.RAVENSP_WITH_TESTS=ON \
  -Ccmake.define.RAVENSP_WITH_LAUNCHER=ON \
  -Ccmake.define.Python_EXECUTABLE="$PY" \
  ${RAVENSP_CMAKE_ARGS:-} "${po_args[@]}"
"$PY" -c "import ravensp; print('setup: ravensp', ravensp.build_info())"
