#!/usr/bin/env bash
# One-command, idempotent set-up of the OpenMMLab stack on current PyTorch.
#
# Creates .venv/ in the repository, installs torch, builds mmcv 2.1.0 from its PyPI source
# (patched for C++20, which torch >= 2.10 headers require) and caches the wheel outside the
# repository so that the next set-up on this machine reuses it, then installs mmengine, mmdet,
# mmsegmentation, timm, pycocotools, onnx(runtime), pytest and this package in editable mode.
#
# Environment overrides:
#   GB_VENV           virtualenv path                 (default: <repo>/.venv)
#   GB_PYTHON         interpreter to create it with   (default: python3)
#   GB_CACHE          wheel cache                     (default: ~/.cache/ghost_backbones)
#   TORCH_VERSION / TORCHVISION_VERSION               (default: 2.14.1 / 0.29.1)
#   MAX_JOBS          parallel compile jobs for mmcv  (default: number of cores)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GB_VENV:-$REPO/.venv}"
PYTHON="${GB_PYTHON:-python3}"
CACHE="${GB_CACHE:-$HOME/.cache/ghost_backbones}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
MMCV_VERSION=2.1.0
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

step() { printf '\n==> [setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '\nSETUP FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command on line $LINENO exited with $? (see the output above)"' ERR

start=$(date +%s)
command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' interpreter (set GB_PYTHON)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || fail "Python >= 3.8 required"

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV" || fail "python -m venv failed (on Debian: apt-get install python3-venv)"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --progress-bar off)

step "build tools: setuptools (with pkg_resources, which mmcv's setup.py imports), wheel, ninja"
"${PIP[@]}" -q "setuptools>=77,<82" wheel ninja

step "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.split('+')[0] == '$TORCH_VERSION' and torchvision.__version__.split('+')[0] == '$TORCHVISION_VERSION'))" 2>/dev/null; then
  "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
else
  echo "already installed"
fi

step "OpenMMLab packages, timm, pycocotools, onnx, test tools"
"${PIP[@]}" -q "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" ftfy regex \
  "timm>=1.0" pycocotools onnx onnxruntime pytest matplotlib

# ---- mmcv 2.1.0 with compiled ops ------------------------------------------------------------
WITH_CUDA=0
if command -v nvcc >/dev/null 2>&1 && "$PY" -c 'import torch,sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  WITH_CUDA=1
fi
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
FLAVOUR="torch${TORCH_VERSION}-${PYTAG}-$([ $WITH_CUDA = 1 ] && echo cuda || echo cpu)"
WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-$FLAVOUR"

mmcv_ok() { "$PY" - <<'PY' 2>/dev/null
import sys
import mmcv, torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
sys.exit(not (mmcv.__version__ == '2.1.0' and keep.tolist() == [0]))
PY
}

step "mmcv $MMCV_VERSION ($FLAVOUR)"
if mmcv_ok; then
  echo "already installed with working ops"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    command -v g++ >/dev/null || fail "no C++ compiler: mmcv's ops must be compiled (apt-get install g++)"
    BUILD="$(mktemp -d)"
    echo "no cached wheel in $WHEEL_DIR: building from the PyPI source in $BUILD (about 16 min on 2 cores)"
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers: "#error C++20 or later compatible compiler is required to use ATen".
    grep -q "'-std=c++17'" "$SRC/setup.py" || fail "mmcv setup.py no longer has '-std=c++17': patch needs review"
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$SRC/setup.py"
    [ $WITH_CUDA = 1 ] && export FORCE_CUDA=1
    MMCV_WITH_OPS=1 "$PY" -m pip wheel --no-build-isolation --no-deps -w "$BUILD/wheel" "$SRC"
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/wheel/mmcv-*.whl "$WHEEL_DIR/"
    rm -rf "$BUILD"
  else
    echo "reusing cached wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  fi
  "${PIP[@]}" --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  # mmcv's own runtime requirements (no torch pin there, so this touches nothing else)
  "${PIP[@]}" -q addict packaging Pillow pyyaml yapf opencv-python
  mmcv_ok || fail "mmcv installed but mmcv.ops.nms does not run"
fi

step "ghost_backbones (editable)"
"${PIP[@]}" -q --no-deps --no-build-isolation -e "$REPO"

step "check: the whole stack imports"
"$PY" - <<'PY'
import torch, torchvision, mmcv, mmengine, mmdet, mmseg, timm, pycocotools, onnx, onnxruntime
import ghost_backbones
print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| mmcv', mmcv.__version__,
      '| mmengine', mmengine.__version__, '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__,
      '| timm', timm.__version__, '| ghost_backbones', ghost_backbones.__version__)
PY
trap - ERR
printf '\nset-up done in %ds. Activate with: source %s/bin/activate\n' $(( $(date +%s) - start )) "$VENV"
