"""Backbone latency side by side, in ONE process: ours (training structure), ours (deploy: BN
folded, v3 re-parameterised, channels_last on CPU), timm's counterpart (features_only), mmdet's
MobileNetV2 1.0x and ours in onnxruntime; median latency, img/s, ratios, params, FLOPs.

    python tools/analysis/benchmark.py [--archs v1 v2 v3] [--size 320] [--batches 1 8]
        [--threads 2] [--iters 50] [--device cpu|cuda] [--dtype float32|float16] [--json out.json]
        [--out-stride 32|16|8] [--cuda-graphs | --no-cuda-graphs] [--compile]
        # ours at --out-stride (dilated, for segmentation) beside timm and MobileNetV2 at stride 32;
        # on CUDA also the deployed backbone and MobileNetV2 replayed from CUDA graphs; --compile:
        # also ours (deploy) and timm through torch.compile (ratios stay against timm eager)
    python tools/analysis/benchmark.py --quick          # few iterations: checks that it runs
    python tools/analysis/benchmark.py --train-detectors --device cuda --amp [--compile]
        # training img/s of SSDLite-GhostNet vs SSDLite-MobileNetV2 on synthetic batches
    python tools/analysis/benchmark.py --deploy --config CONFIG [CONFIG ...] --checkpoint CKPT [CKPT ...]
        --data data/synthetic [--size 320] [--threads 2] [--calib-images 32]
        # backbone and whole model (post-processing included): PyTorch eager / deploy FP32, ONNX
        # Runtime FP32 / INT8 latency at batch 1, and the box AP or mIoU of each on the synthetic
        # val set, scored through tools/deploy/onnx_infer.py; several models in one run (a
        # summary row each)
"""
import argparse
import importlib.util
import json
import os.path as osp
import tempfile

from ghost_backbones.apps.benchmark import (DETECTORS, compare_detector_training, deployment_rows, deployment_variants,
                                            detector_config, format_rows, mean_iou, run_benchmark)
from ghost_backbones.models import ARCHS


def load_runner():
    """tools/deploy/onnx_infer.py, the standalone runner: every variant is scored by its code."""
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'deploy', 'onnx_infer.py')
    spec = importlib.util.spec_from_file_location('onnx_infer', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def score(session, spec, data_root, runner) -> float:
    """Box AP (pycocotools) or mIoU of one end-to-end variant on the synthetic val set."""
    import numpy as np
    from PIL import Image
    if spec['task'] == 'detection':
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        ann = osp.join(data_root, 'coco', 'annotations', 'instances_val.json')
        results = runner.coco_results(session, spec, ann, osp.join(data_root, 'coco', 'val'))
        truth = COCO(ann)
        evaluation = COCOeval(truth, truth.loadRes(results), 'bbox')
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        return float(evaluation.stats[0])
    voc = osp.join(data_root, 'voc', 'VOC2012')
    names = open(osp.join(voc, 'ImageSets', 'Segmentation', 'val.txt')).read().split()
    pairs = ((runner.segment(session, spec, runner.read_rgb(osp.join(voc, 'JPEGImages', n + '.jpg'))),
              np.asarray(Image.open(osp.join(voc, 'SegmentationClass', n + '.png')))) for n in names)
    return mean_iou(pairs, len(spec['classes']))


def deployment(args) -> list:
    """Each --config / --checkpoint pair in turn, in this one process: its table, then (several
    pairs) one summary row each: the whole model's AP and latency in every form."""
    from mmengine.config import Config

    from ghost_backbones.apps.main_job import config_data_options
    from ghost_backbones.apps.runtime import parse_cfg_options
    runner = load_runner()
    checkpoints = args.checkpoint or [None] * len(args.config)
    if len(checkpoints) != len(args.config):
        raise SystemExit('--deploy: give one --checkpoint per --config')
    rows, summary = [], []
    for config, checkpoint in zip(args.config, checkpoints):
        options = parse_cfg_options(config_data_options(Config.fromfile(config), args.data))
        with tempfile.TemporaryDirectory() as work_dir:
            timed = deployment_variants(config, checkpoint, work_dir, args.size, args.threads, args.calib_images,
                                        options)
            model_rows = deployment_rows(timed, args.warmup, args.iters)
            scored = deployment_variants(config, checkpoint, work_dir, None, args.threads, args.calib_images, options)
            metric = 'box AP' if scored['spec']['task'] == 'detection' else 'mIoU'
            accuracy = {name: score(session, scored['spec'], args.data, runner)
                        for name, session in scored['whole'].items()}
        name = osp.splitext(osp.basename(config))[0]
        print(f"\n{name}\n\n| part | variant | median ms ({model_rows[0]['size'][0]}x{model_rows[0]['size'][1]}, "
              f"batch 1) | / ONNX Runtime FP32 | {metric} (synthetic val) |\n|---|---|---|---|---|")
        for row in model_rows:
            row.update(config=config, metric=metric, value=accuracy[row['variant']] if row['part'] == 'whole' else None)
            value = f"{row['value']:.3f}" if row['value'] is not None else '-'
            print(f"| {row['part']} | {row['variant']} | {row['latency_ms']:.1f} | {row['vs_onnxruntime_fp32']:.2f} | "
                  f"{value} |")
        whole = {row['variant']: row for row in model_rows if row['part'] == 'whole'}
        summary.append((name, metric, whole))
        rows += model_rows
    if len(summary) > 1:
        variants = list(summary[0][2])
        size = f"{rows[0]['size'][0]}x{rows[0]['size'][1]}"
        print(f"\n| model | metric | {' | '.join(variants)} | whole-model ms ({size}, batch 1): "
              f"{' / '.join(variants)} |\n|---|---|{'---|' * len(variants)}---|")
        for name, metric, whole in summary:
            values = ' | '.join(f"{whole[v]['value']:.3f}" for v in variants)
            times = ' / '.join(f"{whole[v]['latency_ms']:.1f}" for v in variants)
            print(f'| {name} | {metric} | {values} | {times} |')
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--archs', nargs='+', default=list(ARCHS), choices=ARCHS)
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
    parser.add_argument('--out-stride', type=int, default=32, choices=[32, 16, 8],
                        help='output stride of ours (16 / 8: dilated); timm and MobileNetV2 stay at 32')
    graphs = parser.add_mutually_exclusive_group()
    graphs.add_argument('--cuda-graphs', dest='cuda_graphs', action='store_true', default=None,
                        help='also time the deployed backbone and MobileNetV2 replayed from CUDA graphs '
                             '(default: on CUDA)')
    graphs.add_argument('--no-cuda-graphs', dest='cuda_graphs', action='store_false')
    parser.add_argument('--quick', action='store_true', help='2 warm-up and 3 timed runs, batch 1 and 2')
    parser.add_argument('--train-detectors', action='store_true')
    parser.add_argument('--detectors', nargs='+', metavar='CONFIG',
                        help='configs for --train-detectors (default: SSDLite-GhostNet and SSDLite-MobileNetV2)')
    parser.add_argument('--rounds', type=int, default=1, help='interleaved rounds of --train-detectors')
    parser.add_argument('--amp', action='store_true', help='fp16 autocast for --train-detectors')
    parser.add_argument('--compile', action='store_true',
                        help='latency: also ours (deploy) and timm through torch.compile (on CPU it needs a C++ '
                             'compiler); --train-detectors: torch.compile of backbone, neck and head')
    parser.add_argument('--deploy', action='store_true', help='deployment variants of --config (see above)')
    parser.add_argument('--config', nargs='+', help='detector / segmenter configs for --deploy')
    parser.add_argument('--checkpoint', nargs='+', help='their trained weights, one per config')
    parser.add_argument('--data', default='data/synthetic', help='synthetic data for the scores of --deploy')
    parser.add_argument('--calib-images', type=int, default=32, help='INT8 calibration images for --deploy')
    parser.add_argument('--json', help='write the rows to this file')
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.iters, args.batches = 2, 3, [1, 2]
    if args.channels_last is None:
        # measured: it speeds up the deployed backbone on CPU, and slows it down in fp16 on an H200
        args.channels_last = args.device == 'cpu'

    if args.deploy:
        rows = deployment(args)
    elif args.train_detectors:
        detectors = {osp.splitext(osp.basename(p))[0]: p for p in args.detectors} if args.detectors else \
            {name: detector_config(path) for name, path in DETECTORS.items()}
        rows = compare_detector_training(
            detectors, args.rounds, device=args.device, batch=args.batches[-1], size=args.size, iters=args.iters,
            warmup=args.warmup, amp=args.amp, channels_last=args.channels_last, compile_model=args.compile,
            threads=args.threads)
        for row in rows:
            print(f"{row['name']:40s} {row['img_per_s']:8.1f} img/s  ({row['s_per_iter'] * 1000:.0f} ms/iter, "
                  f"batch {row['batch']}, {row['size']}x{row['size']}, {row['device']}, amp={row['amp']})")
        print(f"ratio {rows[0]['name']} / {rows[1]['name']} throughput: {rows[0]['img_per_s'] / rows[1]['img_per_s']:.2f}")
    else:
        rows = run_benchmark(args.archs, args.width, args.size, args.batches, args.device, args.dtype, args.threads,
                             args.warmup, args.iters, args.channels_last, not args.no_onnx,
                             out_stride=args.out_stride, cuda_graphs=args.cuda_graphs, compiled=args.compile)
        print(format_rows(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)


if __name__ == '__main__':
    main()
