"""The GPU check (tools/analysis/gpu_check.sh) runs every step on CPU at tiny sizes, writes one
JSON and prints its table; its CUDA paths are guarded."""
import json
import os.path as osp
import subprocess

import pytest
import torch

from ghost_backbones.apps import gpu_check
from ghost_backbones.apps.benchmark import DETECTORS
from helpers import ROOT


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_cpu(tmp_path):
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', 'analysis', 'gpu_check.sh'), '--skip-setup',
                          '--device', 'cpu', '--out', str(tmp_path / 'check')], capture_output=True, text=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    report = json.loads((tmp_path / 'check' / 'gpu_check.json').read_text())
    assert report['ok'] and list(report['steps']) == list(gpu_check.STEPS)  # no set-up step: skipped
    steps = report['steps']
    assert steps['mmcv_ops']['passed'] > 0 and not steps['mmcv_ops'].get('failed')
    assert steps['ssdlite']['amp'] is False and 'coco/bbox_mAP' in steps['ssdlite']['metrics']
    assert steps['fpn']['iters'] == 2 and osp.isfile(steps['fpn']['checkpoint'])
    models = {row['model'] for row in steps['benchmark']['rows']}
    assert {'ours (deploy)', 'timm ghostnet (eager)', 'mmdet MobileNetV2 1.0x (eager)'} <= models
    assert not any('CUDA graphs' in m for m in models)  # CPU: no graphs
    assert [r['name'] for r in steps['detector_training']['rows']] == list(DETECTORS)
    assert '| benchmark | ok |' in out.stdout and '| ours (deploy) |' in out.stdout


def test_pytest_summary_is_parsed():
    assert gpu_check.pytest_counts('12 passed, 3 deselected in 4.10s') == dict(passed=12, deselected=3)
    assert gpu_check.pytest_counts('1 failed, 2 passed in 1s') == dict(failed=1, passed=2)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message without a GPU')
def test_cuda_without_a_gpu_says_how_to_run_on_cpu(tmp_path):
    with pytest.raises(RuntimeError, match='--device cpu'):
        gpu_check.run_gpu_check(str(tmp_path), device='cuda')


def test_a_failing_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(device, out_dir, sizes):
        raise ValueError('broken on purpose')
    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, 'mmcv_ops', broken)
    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, 'fpn', lambda device, out_dir, sizes: dict(iters=1))
    report = gpu_check.run_gpu_check(str(tmp_path), device='cpu', steps=['mmcv_ops', 'fpn'], setup_seconds=3.0)
    assert not report['ok'] and report['steps']['setup'] == dict(ok=True, seconds=3.0)
    assert report['steps']['mmcv_ops']['error'] == 'ValueError: broken on purpose' and report['steps']['fpn']['ok']
    assert json.loads((tmp_path / 'gpu_check.json').read_text())['ok'] is False


def test_cuda_graph_wrapper_needs_a_cuda_input():
    from ghost_backbones.apps.benchmark import CudaGraphed, run_benchmark
    with pytest.raises(RuntimeError, match='CUDA'):
        CudaGraphed(torch.nn.Identity())(torch.zeros(1))
    with pytest.raises(ValueError, match='CUDA'):
        run_benchmark(device='cpu', cuda_graphs=True)
