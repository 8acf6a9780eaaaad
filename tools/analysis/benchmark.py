"""Backbone latency side by side, in ONE process: ours (training structure), ours (deploy: BN
folded, v3 re-parameterised, channels_last on CPU), timm's counterpart (features_only), mmdet's
MobileNetV2 1.0x and ours in onnxruntime; median latency, img/s, ratios, params, FLOPs.

    python tools/analysis/benchmark.py [--archs v1 v2 v3] [--size 320] [--batches 1 8]
        [--threads 2] [--iters 50] [--device cpu|cuda] [--dtype float32|float16] [--json out.json]
    python tools/analysis/benchmark.py --quick          # few iterations: checks that it runs
    python tools/analysis/benchmark.py --train-detectors --device cuda --amp [--compile]
        # training img/s of SSDLite-GhostNet vs SSDLite-MobileNetV2 on synthetic batches
"""
import argparse
import json
import os.path as osp

from ghost_backbones.benchmark import detector_train_throughput, format_rows, run_benchmark

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DETECTORS = {
    'SSDLite-GhostNet 1.0x': osp.join(ROOT, 'configs', 'ghostnet', 'ssdlite_ghostnet-1.0x_8xb24-600e_coco-320.py'),
    'SSDLite-MobileNetV2 1.0x': 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
}


def mmdet_config_path(path):
    if path.startswith('mmdet::'):
        import mmdet
        return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', path[len('mmdet::'):])
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--archs', nargs='+', default=['v1', 'v2', 'v3'])
    parser.add_argument('--width', type=float, default=1.0)
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'])
    memory = parser.add_mutually_exclusive_group()
    memory.add_argument('--channels-last', dest='channels_last', action='store_true', default=None,
                        help='channels_last for ours (deploy) and the detectors (default: on CPU only)')
    memory.add_argument('--no-channels-last', dest='channels_last', action='store_false')
    parser.add_argument('--no-onnx', action='store_true')
    parser.add_argument('--quick', action='store_true', help='2 warm-up and 3 timed runs, batch 1 and 2')
    parser.add_argument('--train-detectors', action='store_true')
    parser.add_argument('--amp', action='store_true', help='fp16 autocast for --train-detectors')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile of backbone, neck and head for --train-detectors')
    parser.add_argument('--json', help='write the rows to this file')
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.iters, args.batches = 2, 3, [1, 2]
    if args.channels_last is None:
        # measured: it speeds up the deployed backbone on CPU, and slows it down in fp16 on an H200
        args.channels_last = args.device == 'cpu'

    if args.train_detectors:
        rows = [dict(name=name, **detector_train_throughput(
            mmdet_config_path(path), args.device, batch=args.batches[-1], size=args.size, iters=args.iters,
            warmup=args.warmup, amp=args.amp, channels_last=args.channels_last, compile_model=args.compile,
            threads=args.threads))
            for name, path in DETECTORS.items()]
        for row in rows:
            print(f"{row['name']:28s} {row['img_per_s']:8.1f} img/s  ({row['s_per_iter'] * 1000:.0f} ms/iter, "
                  f"batch {row['batch']}, {row['size']}x{row['size']}, {row['device']}, amp={row['amp']})")
        print(f"ratio GhostNet / MobileNetV2 throughput: {rows[0]['img_per_s'] / rows[1]['img_per_s']:.2f}")
    else:
        rows = run_benchmark(args.archs, args.width, args.size, args.batches, args.device, args.dtype, args.threads,
                             args.warmup, args.iters, args.channels_last, not args.no_onnx)
        print(format_rows(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)


if __name__ == '__main__':
    main()
