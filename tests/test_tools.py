"""The analysis and benchmark tools run and print what they promise (no speed assertions)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from ghost_backbones.analysis import model_info

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.parametrize('arch, timm_name', [('v1', 'ghostnet_100'), ('v2', 'ghostnetv2_100'),
                                             ('v3', 'ghostnetv3_100')])
def test_model_info_params_equal_timm_without_its_head(arch, timm_name):
    timm = pytest.importorskip('timm')
    reference = timm.create_model(timm_name)
    head = sum(p.numel() for name, p in reference.named_parameters() if name.startswith(('conv_head', 'classifier')))
    info = model_info(arch, 1.0, sizes=(64,))
    assert info['params_m'] * 1e6 == pytest.approx(sum(p.numel() for p in reference.parameters()) - head, abs=1)
    assert info['out_channels'] == [24, 40, 112, 960] and info['out_strides'] == [4, 8, 16, 32]
    assert 0 < info['gflops_64'] < 0.05


def test_model_info_tool_prints_the_table():
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'analysis', 'model_info.py'), '--archs', 'v1', 'v3',
                          '--widths', '0.5', '--sizes', '64'], capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if line.startswith('| v')]
    assert len(lines) == 2 and '(12, 20, 56, 480)' in lines[0]


def test_benchmark_quick_mode_prints_every_row(tmp_path):
    json_path = tmp_path / 'bench.json'
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'), '--quick', '--size', '64',
                          '--json', str(json_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(json_path.read_text())
    models = {r['model'] for r in rows}
    assert {'ours (training structure)', 'ours (deploy)', 'mmdet MobileNetV2 1.0x (eager)',
            'ours (deploy, onnxruntime)'} <= models
    assert {r['arch'] for r in rows} == {'v1', 'v2', 'v3'} and {r['batch'] for r in rows} == {1, 2}
    assert len(rows) == 3 * 6 * 2
    timm_rows = [r for r in rows if r['model'].startswith('timm')]
    assert all(r['vs_timm'] == 1.0 for r in timm_rows)
    assert '| v3 | ours (deploy) | 1 |' in out.stdout


def test_model_info_of_whole_detectors():
    """Params of a whole detector: the backbone's plus the neck's and head's."""
    from ghost_backbones.analysis import config_info
    from ghost_backbones.deploy import build_from_config
    config = osp.join(ROOT, 'configs', 'synthetic', 'ssdlite_ghostnet-1.0x_synthetic-160.py')
    info = config_info(config, 160)
    model = build_from_config(config)
    parts = sum(sum(p.numel() for p in getattr(model, name).parameters()) for name in ('backbone', 'neck', 'bbox_head'))
    assert info['params_m'] * 1e6 == pytest.approx(parts, abs=1)
    backbone_flops = model_info('v1', 1.0, sizes=(160,))['gflops_160']
    assert backbone_flops < info['gflops'] < 3 * backbone_flops


def test_benchmark_detector_training_throughput_runs_on_cpu():
    """The --train-detectors mode (meant for a GPU) runs its training steps on any device."""
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'), '--train-detectors',
                          '--iters', '2', '--warmup', '1', '--batches', '2', '--size', '160', '--no-channels-last'],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if 'img/s' in line]
    assert len(lines) == 2 and lines[0].startswith('SSDLite-GhostNet') and 'ratio GhostNet / MobileNetV2' in out.stdout


def test_make_synthetic_tool_writes_readable_coco_and_voc(tmp_path):
    """tools/data/make_synthetic.py: COCO json that pycocotools reads, VOC masks of the same scenes."""
    import numpy as np
    from PIL import Image
    from pycocotools.coco import COCO
    out = tmp_path / 'synthetic'
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'data', 'make_synthetic.py'), '--out', str(out),
                    '--num-train', '3', '--num-val', '2', '--image-size', '64'], check=True, capture_output=True)
    coco = COCO(str(out / 'coco' / 'annotations' / 'instances_val.json'))
    assert sorted(coco.getImgIds()) == [1, 2] and len(coco.getCatIds()) > 1
    voc = out / 'voc' / 'VOC2012'
    names = (voc / 'ImageSets' / 'Segmentation' / 'train.txt').read_text().split()
    assert names == ['train_000000', 'train_000001', 'train_000002']
    for name in names:
        assert Image.open(voc / 'JPEGImages' / f'{name}.jpg').size == (64, 64)
        labels = np.array(Image.open(voc / 'SegmentationClass' / f'{name}.png'))
        assert labels.shape == (64, 64) and (labels == 0).any()
    boxes = [a['bbox'] for a in coco.loadAnns(coco.getAnnIds())]
    assert boxes and all(0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 64 and y + h <= 64
                         for x, y, w, h in boxes)
