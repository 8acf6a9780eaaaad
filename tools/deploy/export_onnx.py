"""Export GhostNet (deploy mode), a whole detector or a segmenter to ONNX, and check
onnxruntime against PyTorch.

    python tools/deploy/export_onnx.py --arch v3 --widen-factor 1.0 --out ghostnetv3.onnx
    python tools/deploy/export_onnx.py --config CONFIG [--checkpoint CKPT] --out model.onnx
    python tools/deploy/export_onnx.py --config CONFIG --checkpoint CKPT --end2end --out MODEL.onnx
        [--int8 --calib-images N] [--size H [W]] [--cfg-options k=v ...]

Without --end2end, detectors export up to the raw head outputs (per level: class scores, then
boxes) and segmenters to per-pixel logits at the input size. With --end2end, a detector's graph
ends in final detections (post-processing and ONNX NonMaxSuppression in the graph: boxes in
input pixels, scores, labels) and a segmenter's in its label map; the preprocessing and class
names go into the model's metadata for tools/deploy/onnx_infer.py. Inputs are preprocessed
images, batch dynamic. --int8 also writes MODEL.int8.onnx, quantized statically (QDQ,
per-channel) on N training images of the config.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import DictAction

from ghost_backbones.apps.deploy import (build_from_config, compare_with_onnxruntime, deploy_backbone,
                                         export_end2end, export_onnx, wrap_for_export)
from ghost_backbones.models import ARCHS, GhostNet


def int8_path(out: str) -> str:
    root, ext = osp.splitext(out)
    return f'{root}.int8{ext or ".onnx"}'


def end2end(args) -> None:
    from mmengine.config import Config

    from ghost_backbones.apps.quantize import calibration_inputs, quantize_int8
    size = None if args.size is None else (args.size[0], args.size[-1])
    module, spec = export_end2end(args.config, args.checkpoint, args.out, size)
    print(f'wrote {args.out}: {spec["task"]}, input {spec["input_size"]} ({spec["resize"]}), '
          f'{len(spec["classes"])} classes; run it with tools/deploy/onnx_infer.py')
    if args.int8:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)  # e.g. where the training images are
        model = build_from_config(args.config, args.checkpoint)
        inputs = calibration_inputs(cfg, model, args.calib_images, spec['input_size'])
        print(f'wrote {quantize_int8(args.out, int8_path(args.out), inputs)} (INT8, {args.calib_images} '
              f'calibration images)')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', help='detector / segmenter config (default: the bare backbone)')
    parser.add_argument('--checkpoint', help='trained weights for --config')
    parser.add_argument('--arch', default='v1', choices=ARCHS)
    parser.add_argument('--widen-factor', type=float, default=1.0)
    parser.add_argument('--size', type=int, nargs='+', help='input size: H [W] (default: from the config, or 320)')
    parser.add_argument('--end2end', action='store_true', help='post-processing in the graph (needs --config)')
    parser.add_argument('--int8', action='store_true', help='also write an INT8 model (with --end2end)')
    parser.add_argument('--calib-images', type=int, default=64, help='training images to calibrate INT8 on')
    parser.add_argument('--out', required=True)
    parser.add_argument('--atol', type=float, default=1e-4)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings for the INT8 calibration, key=value')
    args = parser.parse_args()
    if args.end2end:
        if not args.config:
            parser.error('--end2end needs --config')
        return end2end(args)
    if args.int8:
        parser.error('--int8 goes with --end2end')

    size = args.size[0] if args.size else 320
    model = build_from_config(args.config, args.checkpoint) if args.config else \
        GhostNet(arch=args.arch, widen_factor=args.widen_factor).eval()
    module = wrap_for_export(deploy_backbone(model))
    names = export_onnx(module, torch.randn(1, 3, size, size), args.out)
    check = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    diff = compare_with_onnxruntime(module, args.out, check)
    print(f'wrote {args.out} ({len(names)} outputs); onnxruntime vs PyTorch at batch 2: '
          f'max |diff| / output scale = {diff:.2e}')
    if diff > args.atol:
        print(f'FAILED: difference above atol {args.atol}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
