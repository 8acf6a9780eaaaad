"""End-to-end (slow): train on the synthetic set with tools/train.py, score with tools/test.py;
mmdet's and mmseg's own tools run our configs; the train tool stops on bad data before writing.

Thresholds were measured on the 2-core CPU machine (see README, "Synthetic benchmark"); chance
is near 0 for COCO mAP (three classes, boxes must overlap by IoU >= 0.5) and near the share
of background pixels for mIoU's object classes (0).
"""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
from PIL import Image

from ghost_backbones.apps.main_job import data_options, det_schedule_options, seg_schedule_options, train_and_test
from ghost_backbones.apps.runtime import last_checkpoint
from helpers import CONFIGS, DET_CONFIG, SEG_CONFIG, run_tool, tool

YOLO_CONFIG = osp.join(CONFIGS, 'synthetic', 'yolov3_ghostnet-1.0x_synthetic-160.py')
DEEPLAB_CONFIG = osp.join(CONFIGS, 'synthetic', 'deeplabv3_ghostnet-1.0x-d8_synthetic-160.py')


@pytest.mark.slow
def test_ssdlite_ghostnet_learns_the_synthetic_set(trained_ssdlite):
    result = trained_ssdlite
    metrics = {k.split('/')[-1]: v for k, v in result['metrics'].items()}
    # measured (seed 0): AP 0.370, AP50 0.696 (15 epochs, 375 iterations); chance is ~0
    assert metrics['bbox_mAP_50'] >= 0.5, metrics
    assert metrics['bbox_mAP'] >= 0.25, metrics
    assert 'circle' in result['log'] and 'bbox_mAP_copypaste' in result['log']


@pytest.mark.slow
def test_yolov3_ghostnet_learns_the_synthetic_set(synthetic, tmp_path):
    options = data_options('mmdet', synthetic) + det_schedule_options(6, 25)
    metrics = train_and_test(YOLO_CONFIG, str(tmp_path / 'yolov3'), options)['metrics']
    metrics = {k.split('/')[-1]: v for k, v in metrics.items()}
    # measured (seed 0): AP 0.209, AP50 0.476 (6 epochs, 150 iterations; 12 epochs: 0.394 / 0.738); chance is ~0
    assert metrics['bbox_mAP_50'] >= 0.35 and metrics['bbox_mAP'] >= 0.12, metrics


@pytest.mark.slow
def test_fpn_ghostnet_segments_the_synthetic_set(trained_fpn, synthetic, tmp_path):
    result = trained_fpn
    work_dir = result['work_dir']
    metrics = result['metrics']
    # measured (seed 0): mIoU 82.2 (150 iterations, batch 8; 300: 87.6); predicting background everywhere gives about 22
    assert metrics['mIoU'] >= 75, metrics
    # per-class IoU table, as mmseg prints it
    assert 'per class results' in result['log']
    for name in ('background', 'circle', 'square', 'triangle'):
        assert re.search(rf'\|\s+{name}\s+\|\s+\d', result['log']), name

    # one image through mmseg's inference API + visualizer: a colourised mask PNG
    out = str(tmp_path / 'mask.png')
    image = osp.join(synthetic, 'voc', 'VOC2012', 'JPEGImages', 'val_000000.jpg')
    run_tool('demo.py', [image, osp.join(work_dir, osp.basename(SEG_CONFIG)), result['checkpoint'],
                         '--out', out], str(tmp_path / 'demo.log'))
    painted = np.asarray(Image.open(out).convert('RGB')).astype(float)
    original = np.asarray(Image.open(image).convert('RGB')).astype(float)
    assert painted.shape == original.shape
    # mmseg paints image * (1 - alpha) + class colour * alpha (alpha 0.6): recover the colour,
    # take the nearest class colour and compare with the ground truth
    colour = (painted - 0.4 * original) / 0.6
    palette = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]], dtype=float)
    predicted = np.argmin(((colour[:, :, None, :] - palette) ** 2).sum(-1), axis=-1)
    truth = np.asarray(Image.open(image.replace('JPEGImages', 'SegmentationClass').replace('.jpg', '.png')))
    valid = truth != 255
    assert (predicted[valid] == truth[valid]).mean() > 0.9
    objects = valid & (truth > 0)
    assert objects.sum() > 500 and (predicted[objects] > 0).mean() > 0.7  # measured 0.95 and 0.96 (300 iterations: 0.97, 0.81)


@pytest.mark.slow
def test_test_tool_dumps_predictions_and_paints(trained_ssdlite, tmp_path):
    """--out and --show-dir of tools/test.py on the trained detector of the session."""
    work_dir = str(tmp_path / 'scored')
    run_tool('test.py', [DET_CONFIG, trained_ssdlite['checkpoint'], '--work-dir', work_dir,
                         '--out', str(tmp_path / 'res.pkl'), '--show-dir', 'painted',
                         '--cfg-options', *trained_ssdlite['options']], osp.join(work_dir, 'test.log'))
    import pickle
    with open(tmp_path / 'res.pkl', 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 50 and 'pred_instances' in results[0]
    painted = [p for p in glob_all(work_dir, 'painted') if p.endswith('.jpg')]
    assert len(painted) == 50
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        assert json.load(f)['coco/bbox_mAP'] == trained_ssdlite['metrics']['coco/bbox_mAP']


def glob_all(root, folder):
    import glob
    return glob.glob(osp.join(root, '**', folder, '**', '*'), recursive=True)


@pytest.mark.slow
@pytest.mark.parametrize('package, config, options', [
    ('mmdet', DET_CONFIG, det_schedule_options(1, 2) + ['train_dataloader.dataset.indices=16']),  # 2 iterations
    ('mmseg', SEG_CONFIG, seg_schedule_options(4)),
    ('mmseg', DEEPLAB_CONFIG, seg_schedule_options(2)),  # dilated backbone, SyncBN heads, one CPU process
], ids=['mmdet-ssdlite', 'mmseg-fpn', 'mmseg-deeplabv3'])
def test_upstream_tools_run_our_configs(synthetic, tmp_path, package, config, options):
    """mmdet's / mmseg's own tools/train.py and tools/test.py (from their wheels) run our
    configs: the custom_imports line registers GhostNet and applies the compat fixes."""
    import importlib
    tools = osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim', 'tools')
    work_dir = str(tmp_path / package)
    options = data_options(package, synthetic) + options
    run_tool(osp.join(tools, 'train.py'), [config, '--work-dir', work_dir, '--cfg-options', *options],
             osp.join(work_dir, 'train.log'))
    checkpoint = last_checkpoint(work_dir)
    log = run_tool(osp.join(tools, 'test.py'), [config, checkpoint, '--work-dir', work_dir, '--cfg-options', *options],
                   osp.join(work_dir, 'test.log'))
    assert ('bbox_mAP_copypaste' if package == 'mmdet' else 'mIoU') in log


def test_train_tool_stops_before_writing_anything(synthetic, tmp_path):
    """Bad data: a DatasetError naming the record, and the work_dir untouched."""
    import shutil
    import subprocess
    import sys
    root = str(tmp_path / 'data')
    shutil.copytree(synthetic, root)
    path = osp.join(root, 'coco', 'annotations', 'instances_train.json')
    with open(path) as f:
        coco = json.load(f)
    coco['annotations'][1]['category_id'] = 42
    with open(path, 'w') as f:
        json.dump(coco, f)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'epoch_1.pth').write_bytes(b'precious')
    result = subprocess.run([sys.executable, tool('train.py'), DET_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                             *data_options('mmdet', root)], capture_output=True, text=True)
    assert result.returncode != 0
    assert 'DatasetError' in result.stderr and 'unknown category_id 42' in result.stderr
    assert 'Traceback' not in result.stderr and result.returncode == 1, result.stderr[-2000:]  # one line
    assert sorted(os.listdir(work_dir)) == ['epoch_1.pth'] and (work_dir / 'epoch_1.pth').read_bytes() == b'precious'


def test_tools_say_what_they_cannot_run_in_one_line(tmp_path):
    """A classification config (mmpretrain's tools run those), a bad or missing checkpoint, a test
    set that is not there, --amp on a machine without CUDA: exit code 1 and the reason, no
    traceback. Run from an empty folder, as in a fresh clone before the synthetic set exists."""
    import subprocess
    import sys

    import torch
    cls_config = osp.join(CONFIGS, 'synthetic', 'ghostnet-v1-1.0x_synthetic-cls-64.py')
    work_dir = ['--work-dir', str(tmp_path / 'w')]
    (tmp_path / 'bad.pth').write_bytes(b'not a checkpoint')
    torch.save({'state_dict': {}}, str(tmp_path / 'good.pth'))
    cases = {
        'train_cls': ([tool('train.py'), cls_config], "ToolError: default_scope of the config must be one of "
                      "('mmdet', 'mmseg'), got 'mmpretrain': train and test classification configs with mmpretrain"),
        'test_cls': ([tool('test.py'), cls_config, str(tmp_path / 'none.pth')], "got 'mmpretrain'"),
        'test_bad_checkpoint': ([tool('test.py'), DET_CONFIG, str(tmp_path / 'bad.pth'), *work_dir],
                                f'CheckpointError: {tmp_path / "bad.pth"}'),
        'test_no_checkpoint': ([tool('test.py'), DET_CONFIG, str(tmp_path / 'none.pth'), *work_dir],
                               f'ToolError: checkpoint {tmp_path / "none.pth"} does not exist'),
        'no_config': ([tool('train.py'), str(tmp_path / 'none.py')],
                      f'ToolError: config file {tmp_path / "none.py"} does not exist'),
        'test_no_data': ([tool('test.py'), DET_CONFIG, str(tmp_path / 'good.pth'), *work_dir],
                         'DatasetError: test_dataloader: annotation file '
                         'data/synthetic/coco/annotations/instances_val.json does not exist'),
    }
    if not torch.cuda.is_available():
        cases['amp_on_cpu'] = ([tool('train.py'), DET_CONFIG, '--amp', *work_dir], 'ToolError: --amp needs a CUDA')
    (tmp_path / 'cwd').mkdir()
    for name, (command, message) in cases.items():
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300,
                                cwd=str(tmp_path / 'cwd'))
        assert result.returncode == 1, (name, result.returncode, result.stderr[-2000:])
        assert message in result.stderr and 'Traceback' not in result.stderr, (name, result.stderr[-2000:])
