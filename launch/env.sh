# Sourced by the launch/ scripts: picks the Python that holds torch 2.11.0 and
# puts CUDA's tools on PATH. Honours RAVENSP_VENV (default ~/.cache/ravensp/venv,
# outside the clone so reruns reuse it) and RAVENSP_PYTHON (use this interpreter
# as is, e.g. a system Python that already holds torch).
RAVENSP_TORCH_VERSION=2.11.0
RAVENSP_VENV=${RAVENSP_VENV:-$HOME/.cache/ravensp/venv}
RAVENSP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RAVENSP_BUILD=${RAVENSP_BUILD:-$RAVENSP_ROOT/build/py}
if [ -d /usr/local/cuda/bin ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
# NVLink multicast stays off on shared machines (DEVICE.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

ravensp_has_torch() {
  "$1" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$RAVENSP_TORCH_VERSION' else 1)" 2>/dev/null
}

if [ -n "${RAVENSP_PYTHON:-}" ]; then
  PY=$RAVENSP_PYTHON
elif [ -x "$RAVENSP_VENV/bin/python" ]; then
  PY=$RAVENSP_VENV/bin/python
elif ravensp_has_torch python3; then
  PY=$(command -v python3)
else
  PY=$RAVENSP_VENV/bin/python  # created by setup.sh
fi
