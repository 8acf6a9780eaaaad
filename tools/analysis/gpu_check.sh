#!/usr/bin/env bash
# The GPU check (see ghost_backbones/apps/gpu_check.py): the set-up, then the mmcv op tests on
# CUDA, the synthetic SSDLite (AMP) and FPN trained a few iterations and scored with
# tools/test.py, the backbone benchmark (fp16 eager / deploy / CUDA graphs vs MobileNetV2 and
# timm) and the detector training throughput; ONE JSON (outputs/gpu_check/gpu_check.json) and
# a printed table. From a fresh clone on a GPU machine, in under 8 minutes:
#
#   bash tools/analysis/gpu_check.sh [--skip-setup] [--device cuda|cpu] [--out DIR] [--steps ...]
#
# --skip-setup: the virtualenv .venv/ is already there; --device cpu: the same steps, tiny sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
setup=1
args=()
for arg in "$@"; do
    if [ "$arg" = "--skip-setup" ]; then setup=0; else args+=("$arg"); fi
done
if [ "$setup" = 1 ]; then
    start=$(date +%s)
    bash tools/setup_env.sh
    args+=(--setup-seconds "$(( $(date +%s) - start ))")
fi
exec .venv/bin/python -m ghost_backbones.apps.gpu_check "${args[@]}"
