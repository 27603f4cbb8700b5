#!/usr/bin/env bash
# README's first command: installs and builds (setup.sh), then runs the main job.
# Until the ravensp-train launcher lands, the main job is a short training run of
# one Raven layer (GPU when present, else CPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$RAVENSP_ROOT/launch/setup.sh"
source "$RAVENSP_ROOT/launch/env.sh"
"$PY" -m ravensp.examples.layer_demo "$@"
