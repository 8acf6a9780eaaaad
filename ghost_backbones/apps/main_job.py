"""The main job: train, score and show GhostNet models on the built-in synthetic data.

1. writes the synthetic dataset if it is absent;
2. trains SSDLite-GhostNet (detection) and Semantic FPN-GhostNet (segmentation) with
   ``tools/train.py`` (mmengine's logger prints progress and ETA);
3. scores both with ``tools/test.py``: COCO mAP and per-class AP, per-class IoU and mIoU;
4. draws the loss curves and a grid of val images with predicted boxes and masks;
5. writes ``summary.md`` and prints it with the output folder.

Training and testing run as the command-line tools a user would run (``tools/train.py`` is
``python -m ghost_backbones.apps.train_tool``), in subprocesses, on the configs that ship with
the package: the main job works from a checkout and from an installed wheel alike.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from .configs import config_file
from .runtime import last_checkpoint

DET_CONFIG = config_file('synthetic/ssdlite_ghostnet-1.0x_synthetic-160.py')
SEG_CONFIG = config_file('synthetic/fpn_ghostnet-1.0x_synthetic-160.py')


def data_options(scope: str, data_root: str, wrapped_train: bool = False) -> List[str]:
    """``--cfg-options`` pointing a synthetic config at another copy of the data;
    ``wrapped_train``: the training set sits inside a dataset wrapper (YOLOX's
    MultiImageMixDataset), so its root is one level down."""
    train = 'train_dataloader.dataset.dataset' if wrapped_train else 'train_dataloader.dataset'
    if scope == 'mmdet':
        root = osp.join(data_root, 'coco') + '/'
        ann = osp.join(root, 'annotations', 'instances_val.json')
        evaluators = [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    else:
        root = osp.join(data_root, 'voc', 'VOC2012')
        evaluators = []
    datasets = [train, 'val_dataloader.dataset', 'test_dataloader.dataset']
    return [f'{dataset}.data_root={root}' for dataset in datasets] + evaluators


def config_data_options(cfg, data_root: str) -> List[str]:
    """:func:`data_options` for a loaded config (its scope, and whether its training set is wrapped)."""
    return data_options(cfg.default_scope, data_root, wrapped_train='dataset' in cfg.train_dataloader.dataset)


def det_schedule_options(epochs: int, iters_per_epoch: int) -> List[str]:
    warmup = max(1, min(50, epochs * iters_per_epoch // 4))
    return [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            f'param_scheduler.0.end={warmup}', f'param_scheduler.1.T_max={epochs}',
            f'param_scheduler.1.end={epochs}']


def seg_schedule_options(iters: int) -> List[str]:
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'param_scheduler.0.end={iters}', f'default_hooks.checkpoint.interval={iters}']


def tool_command(name: str, python: str = sys.executable) -> List[str]:
    """The command of one of this package's tools: 'train' -> python -m ghost_backbones.apps.train_tool."""
    return [python, '-m', f'ghost_backbones.apps.{name}_tool']


def run_command(command: Sequence[str], log_file: str, env: Optional[dict] = None) -> str:
    """Run a command with its output shown and kept in ``log_file``; fail loudly."""
    os.makedirs(osp.dirname(osp.abspath(log_file)), exist_ok=True)
    lines = []
    with open(log_file, 'w') as log:
        process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env)
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            log.flush()
            lines.append(line)
        process.wait()
    if process.returncode != 0:
        tail = ''.join(lines[-30:])
        raise RuntimeError(f'{" ".join(command)} failed with exit code {process.returncode} '
                           f'(log: {log_file}):\n{tail}')
    return ''.join(lines)


def train_and_test(config: str, work_dir: str, options: Sequence[str], python: str = sys.executable) -> Dict:
    """tools/train.py then tools/test.py on the last checkpoint; metrics and test log."""
    overrides = ['--cfg-options', *options] if options else []
    run_command(tool_command('train', python) + [config, '--work-dir', work_dir, *overrides],
                osp.join(work_dir, 'train.log'))
    checkpoint = last_checkpoint(work_dir)
    test_log = run_command(tool_command('test', python) + [config, checkpoint, '--work-dir', work_dir, *overrides],
                           osp.join(work_dir, 'test.log'))
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        metrics = json.load(f)
    return dict(metrics=metrics, checkpoint=checkpoint, log=test_log)


def extract_table(log: str, header_word: str) -> str:
    """The last ASCII table mmdet / mmseg printed whose header row holds ``header_word``
    (their per-class tables), without the log prefixes."""
    lines = [re.sub(r'^.*? - mm\w+ - INFO - ', '', line) for line in log.splitlines()]
    is_row = [line.startswith(('+', '|')) for line in lines]
    headers = [i for i, line in enumerate(lines) if is_row[i] and header_word in line]
    if not headers:
        return ''
    first = last = headers[-1]
    while first > 0 and is_row[first - 1]:
        first -= 1
    while last + 1 < len(lines) and is_row[last + 1]:
        last += 1
    return '\n'.join(lines[first:last + 1])


def run_main_job(out_dir: str, data_root: str = 'data/synthetic', num_train: int = 200, num_val: int = 50,
                 det_epochs: int = 30, seg_iters: int = 600, grid_images: int = 6,
                 batch_size: int = 8, python: str = sys.executable) -> Dict:
    from .datasets import make_synthetic
    from .visualization import image_grid, load_rgb, plot_loss_curves, predict_and_draw

    start = time.time()
    out_dir = osp.abspath(out_dir)
    data_root = osp.abspath(data_root)
    os.makedirs(out_dir, exist_ok=True)
    if not osp.isfile(osp.join(data_root, 'coco', 'annotations', 'instances_train.json')):
        print(f'[main job] writing the synthetic dataset to {data_root}', flush=True)
        make_synthetic(data_root, num_train=num_train, num_val=num_val)
    with open(osp.join(data_root, 'coco', 'annotations', 'instances_train.json')) as f:
        train_images = len(json.load(f)['images'])
    iters_per_epoch = max(1, train_images // batch_size)

    print(f'[main job] 1/3 training SSDLite-GhostNet for {det_epochs} epochs', flush=True)
    det_dir = osp.join(out_dir, 'ssdlite_ghostnet')
    det_options = data_options('mmdet', data_root) + det_schedule_options(det_epochs, iters_per_epoch) + \
        [f'train_dataloader.batch_size={batch_size}', 'test_evaluator.classwise=True']
    det = train_and_test(DET_CONFIG, det_dir, det_options, python)

    print(f'[main job] 2/3 training Semantic FPN-GhostNet for {seg_iters} iterations', flush=True)
    seg_dir = osp.join(out_dir, 'fpn_ghostnet')
    seg_options = data_options('mmseg', data_root) + seg_schedule_options(seg_iters) + \
        [f'train_dataloader.batch_size={batch_size}']
    seg = train_and_test(SEG_CONFIG, seg_dir, seg_options, python)

    print('[main job] 3/3 drawing loss curves and predictions', flush=True)
    curves = plot_loss_curves({'SSDLite-GhostNet (detection)': det_dir,
                               'Semantic FPN-GhostNet (segmentation)': seg_dir},
                              osp.join(out_dir, 'loss_curves.png'))
    val_list = osp.join(data_root, 'voc', 'VOC2012', 'ImageSets', 'Segmentation', 'val.txt')
    with open(val_list) as f:
        names = [line.strip() for line in f if line.strip()][:grid_images]
    images = [osp.join(data_root, 'coco', 'val', name + '.jpg') for name in names]
    det_config = osp.join(det_dir, osp.basename(DET_CONFIG))
    seg_config = osp.join(seg_dir, osp.basename(SEG_CONFIG))
    grid = image_grid({
        'input': [load_rgb(p) for p in images],
        'boxes': predict_and_draw(det_config, det['checkpoint'], images),
        'masks': predict_and_draw(seg_config, seg['checkpoint'], images),
    }, osp.join(out_dir, 'predictions.png'))

    summary = summarize(det, seg, curves, grid, time.time() - start, det_epochs, seg_iters, train_images)
    with open(osp.join(out_dir, 'summary.md'), 'w') as f:
        f.write(summary)
    with open(osp.join(out_dir, 'metrics.json'), 'w') as f:
        json.dump(dict(detection=det['metrics'], segmentation=seg['metrics']), f, indent=2)
    print('\n' + summary)
    print(f'[main job] everything is in {out_dir}')
    return dict(out_dir=out_dir, detection=det, segmentation=seg, loss_curves=curves, predictions=grid,
                summary=summary)


def summarize(det: Dict, seg: Dict, curves: str, grid: str, seconds: float, det_epochs: int,
              seg_iters: int, train_images: int) -> str:
    from .runtime import format_metrics
    return '\n'.join([
        f'# ghost_backbones main job ({seconds / 60:.1f} min)',
        '',
        f'Synthetic shapes, {train_images} training images. Detection: SSDLite-GhostNet 1.0x, '
        f'{det_epochs} epochs. Segmentation: Semantic FPN-GhostNet 1.0x, {seg_iters} iterations.',
        '',
        '## Detection, COCO bbox metrics (pycocotools)', '', '```',
        format_metrics(det['metrics'], 'mmdet'), '', extract_table(det['log'], 'category'), '```', '',
        '## Segmentation, per-class IoU and mIoU', '', '```',
        format_metrics(seg['metrics'], 'mmseg'), '', extract_table(seg['log'], 'Class'), '```', '',
        f'Loss curves: {curves}', f'Predictions (input / boxes / masks): {grid}',
        f'Checkpoints: {det["checkpoint"]}, {seg["checkpoint"]}', '',
    ])
