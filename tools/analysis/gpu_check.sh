#!/usr/bin/env bash
# The GPU check (see ghost_backbones/apps/gpu_check.py): the set-up, then the mmcv op tests on
# CUDA, the synthetic SSDLite (AMP) and FPN trained a few iterations and scored with
# tools/test.py, the backbone benchmark (fp16 eager / deploy / CUDA graphs vs MobileNetV2 and
# timm) and the detector training throughput; ONE JSON (outputs/gpu_check/gpu_check.json) and
# a printed table. From a fresh clone on a GPU machine, in under 8 minutes:
#
#   bash tools/analysis/gpu_check.sh [--skip-setup | --wheels DIR] [--device cuda|cpu] [--out DIR] [--steps ...]
#
# --skip-setup: the virtualenv .venv/ is already there; --device cpu: the same steps, tiny sizes.
# --wheels DIR: a machine whose image has torch but no package registry (the lent H200): install
# the wheels of DIR (made beforehand by tools/analysis/gpu_wheels.sh where a registry is reachable)
# and this package, with no index, into the image's own interpreter ($GB_PYTHON, default python3),
# and run the check with it.
set -euo pipefail
cd "$(dirname "$0")/../.."
setup=1
wheels=
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --skip-setup) setup=0 ;;
        --wheels) wheels="${2:?--wheels needs a folder}"; shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
python=.venv/bin/python
start=$(date +%s)
if [ -n "$wheels" ]; then
    python="${GB_PYTHON:-python3}"
    ls "$wheels"/*.whl >/dev/null 2>&1 || { echo "no wheels in '$wheels' (make them with tools/analysis/gpu_wheels.sh)" >&2; exit 1; }
    "$python" -c 'import os, sys, sysconfig; sys.exit(not os.access(sysconfig.get_paths()["purelib"], os.W_OK))' ||
        { echo "$python cannot install into its site-packages (not writable): set GB_PYTHON" >&2; exit 1; }
    echo "==> [setup] $(ls "$wheels"/*.whl | wc -l) wheels from $wheels and ghost_backbones into $("$python" -c 'import sys; print(sys.prefix)') (no index)"
    "$python" -m pip install -q --no-index --no-deps --no-cache-dir --disable-pip-version-check "$wheels"/*.whl
    "$python" -m pip install -q --no-index --no-deps --no-build-isolation --disable-pip-version-check -e .
    "$python" -c "import torch, mmcv, mmdet, mmseg, timm, pycocotools, ghost_backbones; from mmcv.ops import nms; \
print('torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__, \
'| timm', timm.__version__, '| ghost_backbones', ghost_backbones.__version__)"
    args+=(--setup-seconds "$(( $(date +%s) - start ))")
elif [ "$setup" = 1 ]; then
    bash tools/setup_env.sh
    args+=(--setup-seconds "$(( $(date +%s) - start ))")
fi
exec "$python" -m ghost_backbones.apps.gpu_check "${args[@]}"
