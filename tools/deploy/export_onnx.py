"""Export GhostNet (deploy mode), a whole detector or a segmenter to ONNX, and check
onnxruntime against PyTorch.

    python tools/deploy/export_onnx.py --arch v3 --widen-factor 1.0 --out ghostnetv3.onnx
    python tools/deploy/export_onnx.py --config CONFIG [--checkpoint CKPT] --out model.onnx

Detectors export up to the raw head outputs (per level: class scores, then boxes; decoding
and NMS are left to mmdet's predict_by_feat), segmenters to per-pixel logits at the input
size. Inputs are normalised images (the data preprocessor is not in the graph), batch dynamic.
"""
import argparse
import sys

import torch

from ghost_backbones.deploy import (build_from_config, compare_with_onnxruntime, deploy_backbone, export_onnx,
                                    wrap_for_export)
from ghost_backbones.models import GhostNet


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', help='detector / segmenter config (default: the bare backbone)')
    parser.add_argument('--checkpoint', help='trained weights for --config')
    parser.add_argument('--arch', default='v1', choices=['v1', 'v2', 'v3'])
    parser.add_argument('--widen-factor', type=float, default=1.0)
    parser.add_argument('--size', type=int, default=320, help='example input size')
    parser.add_argument('--out', required=True)
    parser.add_argument('--atol', type=float, default=1e-4)
    args = parser.parse_args()

    model = build_from_config(args.config, args.checkpoint) if args.config else \
        GhostNet(arch=args.arch, widen_factor=args.widen_factor).eval()
    module = wrap_for_export(deploy_backbone(model))
    names = export_onnx(module, torch.randn(1, 3, args.size, args.size), args.out)
    check = torch.randn(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    diff = compare_with_onnxruntime(module, args.out, check)
    print(f'wrote {args.out} ({len(names)} outputs); onnxruntime vs PyTorch at batch 2: '
          f'max |diff| / output scale = {diff:.2e}')
    if diff > args.atol:
        print(f'FAILED: difference above atol {args.atol}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
