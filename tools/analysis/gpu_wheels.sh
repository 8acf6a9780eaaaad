#!/usr/bin/env bash
# Download, here (where the package registries are reachable), the wheels the GPU check needs on a
# lent GPU machine whose image has torch, timm and onnxruntime but no registry: the names in
# tools/analysis/gpu_wheels.txt, at the versions of requirements/constraints.txt, built for that
# image's Python (3.12, manylinux x86_64). About 11 MB. Then, on the GPU machine:
#
#   bash tools/analysis/gpu_check.sh --wheels .whl      (the device tool: carry=['.whl'])
#
#   bash tools/analysis/gpu_wheels.sh [DIR (default .whl)] [PYTHON_VERSION (default 3.12)]
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-.whl}"
python_version="${2:-3.12}"
python="${GB_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
mapfile -t names < <(grep -v '^\s*#' tools/analysis/gpu_wheels.txt | grep -v '^\s*$')
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
rm -rf "$dir"
mkdir -p "$dir"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    "${platforms[@]}" -c requirements/constraints.txt -d "$dir" "${names[@]}"
count=$(ls "$dir"/*.whl | wc -l)
[ "$count" = "${#names[@]}" ] || { echo "expected ${#names[@]} wheels in $dir, got $count" >&2; exit 1; }
echo "$count wheels for Python $python_version in $dir ($(du -sh "$dir" | cut -f1)); carry '$dir' to the GPU machine"
