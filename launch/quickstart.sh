#!/usr/bin/env bash
# README's first command: installs and builds (setup.sh), then trains the tiny MQAR
# model with ravensp-train: on the GPUs present (one rank each), else on 2 CPU ranks.
# Extra arguments are ravensp-train options (e.g. --train.steps=50).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$RAVENSP_ROOT/launch/setup.sh"
source "$RAVENSP_ROOT/launch/env.sh"
cd "$RAVENSP_ROOT"
ngpu=0
if command -v nvidia-smi >/dev/null 2>&1; then ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
if [ "$ngpu" -gt 0 ]; then
  nranks=$ngpu; device=cuda
else
  nranks=2; device=cpu
fi
echo "quickstart: tiny MQAR on $nranks $device rank(s); metrics in runs/tiny-mqar/metrics.jsonl"
bash "$RAVENSP_ROOT/launch/mpirun.sh" "$nranks" --config configs/tiny-mqar.cfg \
  --train.device="$device" --output.resume=none "$@"
