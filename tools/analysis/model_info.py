"""Print params and FLOPs of GhostNet backbones (mmengine.analysis), as a markdown table.

    python tools/analysis/model_info.py [--archs v1 v2 v3] [--widths 0.5 1.0 1.3 1.6] [--sizes 224 320]
        [--out-stride 32 16 8]      # dilated backbones (segmentation): same params, more FLOPs
    python tools/analysis/model_info.py --config CONFIG [--sizes 160]     # a whole detector / segmenter

FLOPs are mmengine's count (one multiply-add = one FLOP) of the backbone up to its last stage
(no classifier), in the training-time structure.
"""
import argparse

from ghost_backbones.apps.analysis import config_info, markdown_table, model_info
from ghost_backbones.models import ARCHS


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--archs', nargs='+', default=list(ARCHS), choices=ARCHS)
    parser.add_argument('--widths', nargs='+', type=float, default=[0.5, 1.0, 1.3, 1.6])
    parser.add_argument('--sizes', nargs='+', type=int, default=[224, 320])
    parser.add_argument('--out-stride', nargs='+', type=int, default=[32], choices=[32, 16, 8],
                        help='output stride(s) of the backbone; 16 / 8 dilate the last stages')
    parser.add_argument('--config', nargs='+', help='whole models from these configs instead of bare backbones')
    args = parser.parse_args()
    if args.config:
        for config in args.config:
            for size in args.sizes:
                info = config_info(config, size)
                print(f"{config} @{size}: {info['params_m']:.2f} M params, {info['gflops']:.3f} GFLOPs")
        return
    rows = [model_info(arch, width, args.sizes, out_stride=out_stride)
            for arch in args.archs for width in args.widths for out_stride in args.out_stride]
    print(markdown_table(rows, args.sizes))


if __name__ == '__main__':
    main()
