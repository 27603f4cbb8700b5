#!/usr/bin/env bash
# ravensp-train under torchrun: launch/torchrun.sh NPROC [ravensp-train options...]
# torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT; ravensp-train
# rendezvous on a TCP store at MASTER_PORT+1 (RAVENSP_STORE_PORT overrides it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
n=${1:?usage: launch/torchrun.sh NPROC [options...]}; shift
bin=${RAVENSP_TRAIN_BIN:-$RAVENSP_BUILD/bin/ravensp-train}
exec "$PY" -m torch.distributed.run --standalone --nproc-per-node "$n" --no-python "$bin" "$@"
