"""The GPU check (tools/analysis/gpu_check.sh) runs every step on CPU at tiny sizes, writes one
JSON and prints its table; its CUDA paths are guarded."""
import json
import os.path as osp
import subprocess
from typing import List

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


def test_the_json_keeps_the_finished_steps_of_a_run_cut_short(tmp_path, monkeypatch):
    """The lent machine's time limit kills the run: what finished is already in the JSON."""
    def cut_short(device, out_dir, sizes):
        raise KeyboardInterrupt  # not an Exception: run_step does not record it, as with a kill
    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, 'mmcv_ops', lambda device, out_dir, sizes: dict(passed=1))
    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, 'ssdlite', cut_short)
    with pytest.raises(KeyboardInterrupt):
        gpu_check.run_gpu_check(str(tmp_path), device='cpu', steps=['mmcv_ops', 'ssdlite'])
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert report['complete'] is False and report['ok'] and list(report['steps']) == ['mmcv_ops']
    assert report['steps']['mmcv_ops']['passed'] == 1


def read_names(path: str) -> List[str]:
    """Package names of a list file, one or more per line, '#' comments and 'python X.Y' left out."""
    from packaging.utils import canonicalize_name
    lines = [line.split('#')[0].split() for line in open(path)]
    return [canonicalize_name(name) for words in lines if words and words[0] != 'python' for name in words]


def test_the_gpu_wheels_bring_every_requirement_the_image_lacks():
    """The lent GPU machine has no registry: what the check imports beyond the image's packages
    travels as the wheels of tools/analysis/gpu_wheels.txt. Every requirement of those
    distributions and of ghost_backbones[mmdet,mmseg], for the image's Python, is carried or there."""
    import importlib.metadata as md
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.markers import default_environment
    analysis = osp.join(ROOT, 'tools', 'analysis')
    carried = read_names(osp.join(analysis, 'gpu_wheels.txt'))
    image = set(read_names(osp.join(analysis, 'h200_image.txt')))
    image_python = next(line.split()[1] for line in open(osp.join(analysis, 'h200_image.txt'))
                        if line.startswith('python '))
    try:
        installed = {name: md.requires(name) or [] for name in carried + ['ghost_backbones']}
    except md.PackageNotFoundError as missing:
        pytest.skip(f'{missing} is not installed here (the OneDL stack names its distributions otherwise)')
    provided_by = {'opencv-python': 'opencv-python-headless'}  # the same cv2
    missing = []
    for name, requirements in installed.items():
        extras = ('mmdet', 'mmseg') if name == 'ghost_backbones' else ('',)
        for text in requirements:
            requirement = Requirement(text)
            wanted = any(requirement.marker is None or requirement.marker.evaluate(
                dict(default_environment(), python_version=image_python, python_full_version=image_python + '.0',
                     sys_platform='linux', platform_system='Linux', extra=extra)) for extra in extras)
            dep = canonicalize_name(requirement.name)
            if wanted and dep not in carried and dep not in image and provided_by.get(dep) not in image:
                missing.append(f'{name} -> {requirement}')
    assert not missing, f'neither carried nor in the image: {missing}'


def test_the_offline_set_up_needs_its_wheels(tmp_path):
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', 'analysis', 'gpu_check.sh'), '--wheels', str(tmp_path),
                          '--device', 'cpu'], capture_output=True, text=True)
    assert out.returncode == 1 and f"no wheels in '{tmp_path}'" in out.stderr and 'gpu_wheels.sh' in out.stderr
