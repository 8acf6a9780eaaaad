"""Params and FLOPs (apps/analysis.py, tools/analysis/model_info.py)."""
import subprocess
import sys

import pytest
import timm

from ghost_backbones.apps.analysis import config_info, model_info
from ghost_backbones.apps.deploy import build_from_config
from helpers import DET_CONFIG, timm_name, tool


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
def test_model_info_params_equal_timm_without_its_head(arch):
    reference = timm.create_model(timm_name(arch))
    head = sum(p.numel() for name, p in reference.named_parameters() if name.startswith(('conv_head', 'classifier')))
    info = model_info(arch, 1.0, sizes=(64,))
    assert info['params_m'] * 1e6 == pytest.approx(sum(p.numel() for p in reference.parameters()) - head, abs=1)
    assert info['out_channels'] == [24, 40, 112, 960] and info['out_strides'] == [4, 8, 16, 32]
    assert 0 < info['gflops_64'] < 0.05


def test_model_info_tool_prints_the_table():
    out = subprocess.run([sys.executable, tool('analysis', 'model_info.py'), '--archs', 'v1', 'v3',
                          '--widths', '0.5', '--sizes', '64'], capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if line.startswith('| v')]
    assert len(lines) == 2 and '(12, 20, 56, 480)' in lines[0]


def test_model_info_of_dilated_backbones():
    """``--out-stride``: the dilated backbone of segmentation, same params, more FLOPs; v2's DFC
    attention runs on the sub-grid it reads, so what v2 adds to v1 hardly grows with dilation
    (running it at full resolution made it 4x at out_stride 16 and 25x at 8)."""
    out = subprocess.run([sys.executable, tool('analysis', 'model_info.py'), '--archs', 'v1', 'v2', '--widths', '1.0',
                          '--sizes', '128', '--out-stride', '32', '8'], capture_output=True, text=True, check=True).stdout
    rows = [line.split(' | ') for line in out.splitlines() if line.startswith('| v')]
    assert [(r[0], r[-1]) for r in rows] == [('| v1', '(4, 8, 16, 32) |'), ('| v1', '(4, 8, 8, 8) |'),
                                              ('| v2', '(4, 8, 16, 32) |'), ('| v2', '(4, 8, 8, 8) |')]
    (v1_32, v1_8, v2_32, v2_8) = [float(r[4]) for r in rows]
    assert rows[0][2] == rows[1][2] and v1_8 > 5 * v1_32
    assert 0 < v2_8 - v1_8 < 1.25 * (v2_32 - v1_32)


def test_model_info_of_whole_detectors():
    """Params of a whole detector: the backbone's plus the neck's and head's."""
    info = config_info(DET_CONFIG, 160)
    model = build_from_config(DET_CONFIG)
    parts = sum(sum(p.numel() for p in getattr(model, name).parameters()) for name in ('backbone', 'neck', 'bbox_head'))
    assert info['params_m'] * 1e6 == pytest.approx(parts, abs=1)
    backbone_flops = model_info('v1', 1.0, sizes=(160,))['gflops_160']
    assert backbone_flops < info['gflops'] < 3 * backbone_flops
