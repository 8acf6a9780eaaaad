#!/usr/bin/env bash
# One-command, idempotent set-up of the OpenMMLab stack on current PyTorch, with no compiler.
#
# Creates .venv/ in the repository and installs, at the versions the tests passed with
# (requirements/constraints.txt): torch + torchvision, mmengine, mmcv, mmdet, mmsegmentation,
# mmpretrain, timm, pycocotools, onnx(runtime), pytest, and this package in editable mode.
#
# GB_STACK=onedl sets up the OneDL fork instead (the maintained OpenMMLab continuation; same import
# names, distributions onedl-mmengine / -mmcv / -mmdetection / -mmsegmentation / -mmpretrain) in
# .venv-onedl/, pinned by requirements/constraints-onedl.txt. onedl-mmcv is built from its PyPI
# source with build isolation, i.e. without torch, so without compiled ops (this package's mmcv._ext
# provider serves, as for mmcv-lite); GB_MMCV=full compiles its ops instead.
#
# mmcv: by default mmcv-lite 2.1.0 (pure Python); this package's startup hook provides the ops
# that mmdet / mmseg call (NMS, RoIAlign, sigmoid focal loss) on torchvision, CPU and CUDA.
# GB_MMCV=full builds mmcv 2.1.0 with its compiled ops from the PyPI source instead (patched for
# C++20, which torch >= 2.10 headers require; CUDA ops when nvcc and a GPU are present) and caches
# the wheel. A compiled mmcv already in the environment is kept as it is.
#
# Environment overrides:
#   GB_STACK          openmmlab (default) | onedl
#   GB_MMCV           lite (default) | full
#   GB_CONSTRAINTS    pip constraints file (default: requirements/constraints.txt,
#                     requirements/constraints-onedl.txt for GB_STACK=onedl);
#                     'none' installs the newest releases that the version ranges allow
#   GB_VENV           virtualenv path                 (default: <repo>/.venv, <repo>/.venv-onedl)
#   GB_PYTHON         interpreter to create it with   (default: python3)
#   GB_CACHE          wheel cache for GB_MMCV=full    (default: ~/.cache/ghost_backbones)
#   TORCH_VERSION / TORCHVISION_VERSION               (default: 2.14.1 / 0.29.1)
#   MAX_JOBS          parallel compile jobs for GB_MMCV=full (default: number of cores)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${GB_STACK:-openmmlab}"
if [ "$STACK" = onedl ]; then
  VENV="${GB_VENV:-$REPO/.venv-onedl}"
  CONSTRAINTS="${GB_CONSTRAINTS:-$REPO/requirements/constraints-onedl.txt}"
else
  VENV="${GB_VENV:-$REPO/.venv}"
  CONSTRAINTS="${GB_CONSTRAINTS:-$REPO/requirements/constraints.txt}"
fi
PYTHON="${GB_PYTHON:-python3}"
CACHE="${GB_CACHE:-$HOME/.cache/ghost_backbones}"
MMCV_FLAVOUR="${GB_MMCV:-lite}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
if [ "$STACK" = onedl ]; then MMCV_VERSION=2.3.6; else MMCV_VERSION=2.1.0; fi
export GB_MMCV_VERSION="$MMCV_VERSION"  # what mmcv_ok expects
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

step() { printf '\n==> [setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '\nSETUP FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command on line $LINENO exited with $? (see the output above)"' ERR

start=$(date +%s)
case "$MMCV_FLAVOUR" in lite|full) ;; *) fail "GB_MMCV must be 'lite' or 'full', got '$MMCV_FLAVOUR'" ;; esac
case "$STACK" in openmmlab|onedl) ;; *) fail "GB_STACK must be 'openmmlab' or 'onedl', got '$STACK'" ;; esac
command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' interpreter (set GB_PYTHON)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || fail "Python >= 3.8 required"

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV" || fail "python -m venv failed (on Debian: apt-get install python3-venv)"
fi
# git ignores the venv's contents wherever it is (.venv-onedl is in no .gitignore pattern; Python 3.13's venv does the same)
[ -f "$VENV/.gitignore" ] || printf '*\n' > "$VENV/.gitignore"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --progress-bar off)
if [ "$CONSTRAINTS" != none ]; then
  [ -f "$CONSTRAINTS" ] || fail "constraints file $CONSTRAINTS not found (GB_CONSTRAINTS=none for the newest releases)"
  PIP+=(-c "$CONSTRAINTS")
fi

# mmengine resolves `mmdet::` configs with pkg_resources, which setuptools 82 removed.
step "build tools: setuptools < 82 (mmengine imports pkg_resources), wheel"
if [ "$STACK" = onedl ]; then  # onedl-mmcv's build (GB_MMCV=full: in this venv) needs setuptools >= 80, packaging >= 24.2
  "${PIP[@]}" -q "setuptools>=80,<82" wheel "packaging>=24.2"
else
  "${PIP[@]}" -q "setuptools>=77,<82" wheel
fi

step "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.split('+')[0] == '$TORCH_VERSION' and torchvision.__version__.split('+')[0] == '$TORCHVISION_VERSION'))" 2>/dev/null; then
  "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
else
  echo "already installed"
fi

# ---- GB_STACK=onedl: the OneDL fork ----------------------------------------------------------
# Same import names as upstream (mmengine, mmcv, mmdet, mmseg, mmpretrain), other distributions.
# Upstream's mm* distributions would write the same folders: they are removed from this venv.
UPSTREAM_MM="mmengine mmcv mmcv-lite mmdet mmsegmentation mmpretrain"
onedl_mmcv_state() { "$PY" - <<'PY' 2>/dev/null || echo "none no"
import glob, importlib.metadata as md, importlib.util, os
try:
    version = md.version('onedl-mmcv')
except md.PackageNotFoundError:
    version = 'none'
spec = importlib.util.find_spec('mmcv')
compiled = bool(spec and spec.origin and glob.glob(os.path.join(os.path.dirname(spec.origin), '_ext*.so')))
print(version.split('+')[0], 'yes' if compiled else 'no')
PY
}
onedl_stack_ok() { "$PY" - <<'PY'
import importlib.metadata as md, os, sys
import mmcv, torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
ok = mmcv.__version__ == os.environ['GB_MMCV_VERSION'] and keep.tolist() == [0]
upstream = sorted({d.metadata['Name'].lower() for d in md.distributions()} & set(os.environ['UPSTREAM_MM'].split()))
if upstream:
    print('upstream OpenMMLab distributions in the OneDL venv:', upstream)
sys.exit(not ok or bool(upstream))
PY
}

# Build (or reuse from the cache) a compiled wheel of DIST (mmcv or onedl-mmcv) at $MMCV_VERSION and install it.
build_full_mmcv() {
  local DIST="$1" STEM="${1//-/_}"
  WITH_CUDA=0
  if command -v nvcc >/dev/null 2>&1 && "$PY" -c 'import torch,sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    WITH_CUDA=1
  fi
  PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  FLAVOUR="torch${TORCH_VERSION}-${PYTAG}-$([ $WITH_CUDA = 1 ] && echo cuda || echo cpu)"
  WHEEL_DIR="$CACHE/$DIST-$MMCV_VERSION-$FLAVOUR"
  if ! ls "$WHEEL_DIR"/"$STEM"-*.whl >/dev/null 2>&1; then
    command -v g++ >/dev/null || fail "no C++ compiler: GB_MMCV=full compiles $DIST's ops (apt-get install g++)"
    "${PIP[@]}" -q ninja
    BUILD="$(mktemp -d)"
    echo "no cached wheel in $WHEEL_DIR: building $DIST from the PyPI source in $BUILD (16 to 30 min on 2 cores)"
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "$DIST==$MMCV_VERSION"
    tar -xzf "$BUILD"/"$STEM"-$MMCV_VERSION.tar.gz -C "$BUILD"
    SRC="$BUILD/$STEM-$MMCV_VERSION"
    # torch >= 2.10 headers: "#error C++20 or later compatible compiler is required to use ATen".
    grep -q "'-std=c++17'" "$SRC/setup.py" || fail "$DIST setup.py no longer has '-std=c++17': patch needs review"
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$SRC/setup.py"
    [ $WITH_CUDA = 1 ] && export FORCE_CUDA=1
    # torch must be importable by setup.py (it skips the ops without it): no build isolation
    MMCV_WITH_OPS=1 "$PY" -m pip wheel --no-build-isolation --no-deps -w "$BUILD/wheel" "$SRC"
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/wheel/"$STEM"-*.whl "$WHEEL_DIR/"
    rm -rf "$BUILD"
  else
    echo "reusing cached wheel $(ls "$WHEEL_DIR"/"$STEM"-*.whl)"
  fi
  "${PIP[@]}" --no-deps --force-reinstall "$WHEEL_DIR"/"$STEM"-*.whl
}

onedl_setup() {
  step "OneDL packages: onedl-mmengine, onedl-mmdetection, onedl-mmsegmentation, onedl-mmpretrain; timm, pycocotools, onnx, test tools"
  # shellcheck disable=SC2086
  "$PY" -m pip uninstall -q -y $UPSTREAM_MM 2>/dev/null || true
  "${PIP[@]}" -q "onedl-mmengine>=0.10.8,<0.11" "onedl-mmdetection>=3.4,<3.6" "onedl-mmsegmentation>=1.3,<1.5" \
    "onedl-mmpretrain>=1.3,<1.4" ftfy regex "timm>=1.0" pycocotools onnx onnxruntime pytest matplotlib

  read -r INSTALLED COMPILED <<< "$(onedl_mmcv_state)"
  step "onedl-mmcv $MMCV_VERSION (wanted: $MMCV_FLAVOUR; installed: $INSTALLED, compiled ops: $COMPILED)"
  if [ "$INSTALLED" != none ] && [ "$COMPILED" = yes ]; then
    echo "a compiled onedl-mmcv $INSTALLED is installed (e.g. OneDL's CUDA wheel): kept as it is"
    export GB_MMCV_VERSION="$INSTALLED"
  elif [ "$INSTALLED" = "$MMCV_VERSION" ] && [ "$MMCV_FLAVOUR" = lite ]; then
    echo "already installed"
  elif [ "$MMCV_FLAVOUR" = full ]; then
    build_full_mmcv onedl-mmcv
  else
    # built with build isolation: no torch in the build environment, so no compiled ops
    "${PIP[@]}" -q "onedl-mmcv==$MMCV_VERSION"
  fi

  step "ghost_backbones (editable, with its startup hook ghost_backbones_startup.pth)"
  "${PIP[@]}" -q --no-deps --no-build-isolation -e "$REPO"

  step "check: no upstream mm* distribution, pip check, the whole stack imports and mmcv's NMS runs"
  UPSTREAM_MM="$UPSTREAM_MM" onedl_stack_ok || fail "onedl-mmcv installed but mmcv.ops.nms does not run, or upstream mm* distributions are present"
  "$PY" -m pip check || fail "pip check reports broken requirements in $VENV"
  "$PY" - <<'PY'
import torch, torchvision, mmcv, mmengine, mmdet, mmseg, mmpretrain, timm, pycocotools, onnx, onnxruntime
import ghost_backbones
from ghost_backbones_startup.mmcv_ext import provider
print('OneDL stack: torch', torch.__version__, '| torchvision', torchvision.__version__, '| mmcv', mmcv.__version__,
      f'(ops: {provider()})', '| mmengine', mmengine.__version__, '| mmdet', mmdet.__version__,
      '| mmseg', mmseg.__version__, '| mmpretrain', mmpretrain.__version__, '| timm', timm.__version__,
      '| ghost_backbones', ghost_backbones.__version__)
PY
  trap - ERR
  printf '\nset-up done in %ds. Activate with: source %s/bin/activate\n' $(( $(date +%s) - start )) "$VENV"
}

if [ "$STACK" = onedl ]; then
  onedl_setup
  exit 0
fi

step "OpenMMLab packages, timm, pycocotools, onnx, test tools"
"${PIP[@]}" -q "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0" ftfy regex \
  "timm>=1.0" pycocotools onnx onnxruntime pytest matplotlib
# openmim (mim list / search / train / test ghost_backbones; tests/test_clients.py runs them) without its
# opendatalab dependency (only for `mim download --dataset`), which would pin setuptools 60 and requests 2.28
"${PIP[@]}" -q --no-deps "openmim==0.3.9"
"${PIP[@]}" -q click colorama model-index pandas requests rich tabulate

# ---- mmcv 2.1.0 ------------------------------------------------------------------------------
mmcv_kind() { "$PY" - <<'PY' 2>/dev/null || echo none
import importlib.metadata as md
names = {d.metadata['Name'].lower() for d in md.distributions()}
print('lite' if 'mmcv-lite' in names else 'full' if 'mmcv' in names else 'none')
PY
}
mmcv_ok() { "$PY" - <<'PY' 2>/dev/null
import sys
import mmcv, torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
import os
sys.exit(not (mmcv.__version__ == os.environ['GB_MMCV_VERSION'] and keep.tolist() == [0]))
PY
}


INSTALLED=$(mmcv_kind)
step "mmcv $MMCV_VERSION (wanted: $MMCV_FLAVOUR; installed: $INSTALLED)"
if [ "$INSTALLED" = full ] && [ "$MMCV_FLAVOUR" = lite ] && mmcv_ok; then
  echo "a compiled mmcv is installed and works: kept as it is"
elif [ "$INSTALLED" = "$MMCV_FLAVOUR" ] && mmcv_ok; then
  echo "already installed"
elif [ "$MMCV_FLAVOUR" = full ]; then
  "$PY" -m pip uninstall -q -y mmcv-lite 2>/dev/null || true
  build_full_mmcv mmcv
  # mmcv's own runtime requirements (no torch pin there, so this touches nothing else)
  "${PIP[@]}" -q addict packaging Pillow pyyaml yapf opencv-python
else
  "$PY" -m pip uninstall -q -y mmcv 2>/dev/null || true
  "${PIP[@]}" -q "mmcv-lite==$MMCV_VERSION"
fi

step "ghost_backbones (editable, with its startup hook ghost_backbones_startup.pth)"
"${PIP[@]}" -q --no-deps --no-build-isolation -e "$REPO"

step "check: the whole stack imports and mmcv's NMS runs"
mmcv_ok || fail "mmcv installed but mmcv.ops.nms does not run"
"$PY" - <<'PY'
import torch, torchvision, mmcv, mmengine, mmdet, mmseg, mmpretrain, timm, pycocotools, onnx, onnxruntime
import ghost_backbones
from ghost_backbones_startup.mmcv_ext import provider
print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| mmcv', mmcv.__version__,
      f'(ops: {provider()})', '| mmengine', mmengine.__version__, '| mmdet', mmdet.__version__,
      '| mmseg', mmseg.__version__, '| mmpretrain', mmpretrain.__version__, '| timm', timm.__version__,
      '| ghost_backbones', ghost_backbones.__version__)
PY
trap - ERR
printf '\nset-up done in %ds. Activate with: source %s/bin/activate\n' $(( $(date +%s) - start )) "$VENV"
