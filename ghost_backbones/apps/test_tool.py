"""Evaluate a checkpoint: COCO bbox mAP for detection configs, per-class IoU and mIoU for
segmentation configs (the config's default_scope decides).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

``tools/test.py`` and ``python -m ghost_backbones.apps.test_tool`` run this.
"""
import argparse
import json
import os.path as osp

from mmengine.config import DictAction
from mmengine.dist import is_main_process

from . import runtime


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a GhostNet detector or segmenter')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation metrics')
    parser.add_argument('--out', help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--show-dir', help='save painted predictions in this directory')
    return runtime.parse_tool_args(parser, argv)


def as_number(value):
    try:
        return float(value)  # numpy scalars included
    except (TypeError, ValueError):
        return str(value)


def main(argv=None):
    args = parse_args(argv)
    with runtime.one_line_errors():
        cfg = runtime.load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        metrics = runtime.test(cfg, args.checkpoint, out=args.out, show_dir=args.show_dir)
    if is_main_process():
        print('\n' + runtime.format_metrics(metrics, runtime.task_scope(cfg)))
        with open(osp.join(cfg.work_dir, 'test_metrics.json'), 'w') as f:
            json.dump({k: as_number(v) for k, v in metrics.items()}, f, indent=2)


if __name__ == '__main__':
    main()
