"""The benchmark tool runs and prints what it promises (no speed assertions: speed goes in the
benchmark's own ratios, measured in one run)."""
import json
import subprocess
import sys

import pytest

from ghost_backbones.apps.benchmark import add_ratios
from helpers import tool


def test_benchmark_quick_mode_prints_every_row(tmp_path):
    """Two of the three archs (each arch's rows are built by the same code; v3 adds re-parameterisation)."""
    json_path = tmp_path / 'bench.json'
    out = subprocess.run([sys.executable, tool('analysis', 'benchmark.py'), '--quick', '--size', '64',
                          '--archs', 'v1', 'v3', '--json', str(json_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(json_path.read_text())
    assert {r['arch'] for r in rows} == {'v1', 'v3'} and {r['batch'] for r in rows} == {1, 2}
    assert len(rows) == 2 * 6 * 2
    for arch in ('v1', 'v3'):
        for batch in (1, 2):
            group = {r['model']: r for r in rows if r['arch'] == arch and r['batch'] == batch}
            assert {'ours (training structure)', 'ours (deploy)', 'mmdet MobileNetV2 1.0x (eager)',
                    'ours (deploy, onnxruntime)'} <= set(group)
            timm_row = next(r for name, r in group.items() if name.startswith('timm'))
            for row in group.values():
                assert row['latency_ms'] > 0 and row['img_per_s'] == pytest.approx(batch * 1000 / row['latency_ms'])
                assert row['vs_timm'] == pytest.approx(row['latency_ms'] / timm_row['latency_ms'])
    assert '| v3 | ours (deploy) | 1 |' in out.stdout


def test_ratios_are_taken_within_each_arch_and_batch():
    rows = [dict(arch='v1', batch=1, model='timm ghostnet (eager)', latency_ms=10.0),
            dict(arch='v1', batch=1, model='mmdet MobileNetV2 1.0x (eager)', latency_ms=20.0),
            dict(arch='v1', batch=1, model='ours (deploy)', latency_ms=5.0),
            dict(arch='v1', batch=8, model='timm ghostnet (eager)', latency_ms=40.0),
            dict(arch='v1', batch=8, model='mmdet MobileNetV2 1.0x (eager)', latency_ms=80.0),
            dict(arch='v1', batch=8, model='ours (deploy)', latency_ms=60.0)]
    add_ratios(rows)
    assert [r['vs_timm'] for r in rows] == [1.0, 2.0, 0.5, 1.0, 2.0, 1.5]
    assert [r['vs_mobilenetv2'] for r in rows] == [0.5, 1.0, 0.25, 0.5, 1.0, 0.75]


def test_benchmark_detector_training_throughput_runs_on_cpu():
    """The --train-detectors mode (meant for a GPU) runs its training steps on any device."""
    out = subprocess.run([sys.executable, tool('analysis', 'benchmark.py'), '--train-detectors', '--iters', '2',
                          '--warmup', '1', '--batches', '2', '--size', '160', '--no-channels-last'],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if 'img/s' in line]
    assert len(lines) == 2 and lines[0].startswith('SSDLite-GhostNet') and 'ratio SSDLite-GhostNet 1.0x / ' in out.stdout


def test_detector_comparison_keeps_each_detectors_best_round(monkeypatch):
    """Rounds interleave the detectors (a, b, a, b) and each keeps its own fastest round."""
    from ghost_backbones.apps import benchmark
    times = iter([0.5, 0.9, 0.4, 1.2])  # round 1: a 0.5, b 0.9; round 2: a 0.4, b 1.2
    calls = []

    def fake_throughput(path, **options):
        calls.append(path)
        return dict(s_per_iter=next(times), batch=options['batch'])

    monkeypatch.setattr(benchmark, 'detector_train_throughput', fake_throughput)
    rows = benchmark.compare_detector_training({'a': 'a.py', 'b': 'b.py'}, rounds=2, batch=8)
    assert calls == ['a.py', 'b.py', 'a.py', 'b.py']
    assert [(r['name'], r['s_per_iter']) for r in rows] == [('a', 0.4), ('b', 0.9)]


def test_deploy_mode_times_and_scores_every_variant(tmp_path):
    """--deploy (meant for a trained checkpoint) on an untrained SSDLite at a tiny size: every
    variant is timed, the whole-model ones are scored, ratios are against ONNX Runtime FP32."""
    from ghost_backbones.apps.datasets import make_synthetic
    from helpers import DET_CONFIG
    make_synthetic(str(tmp_path / 'data'), num_train=4, num_val=2, image_size=160, seed=3)
    json_path = tmp_path / 'deploy.json'
    out = subprocess.run([sys.executable, tool('analysis', 'benchmark.py'), '--deploy', '--config', DET_CONFIG,
                          '--data', str(tmp_path / 'data'), '--size', '96', '--warmup', '1', '--iters', '2',
                          '--calib-images', '2', '--json', str(json_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(json_path.read_text())
    variants = ['PyTorch eager FP32', 'PyTorch deploy FP32', 'ONNX Runtime FP32', 'ONNX Runtime INT8']
    assert [(r['part'], r['variant']) for r in rows] == [(p, v) for p in ('backbone', 'whole') for v in variants]
    for part in ('backbone', 'whole'):
        group = {r['variant']: r for r in rows if r['part'] == part}
        for row in group.values():
            assert row['size'] == [96, 96] and row['latency_ms'] > 0
            assert row['vs_onnxruntime_fp32'] == pytest.approx(row['latency_ms'] / group['ONNX Runtime FP32']['latency_ms'])
    assert all(r['metric'] == 'box AP' and 0 <= r['value'] <= 1 for r in rows if r['part'] == 'whole')
    assert '| whole | ONNX Runtime INT8 |' in out.stdout


def test_ratios_stay_against_timm_eager_when_compiled_rows_come_first():
    rows = [dict(arch='v2', batch=1, model='timm ghostnetv2 (torch.compile)', latency_ms=5.0),
            dict(arch='v2', batch=1, model='mmdet MobileNetV2 1.0x (CUDA graphs)', latency_ms=2.0),
            dict(arch='v2', batch=1, model='timm ghostnetv2 (eager)', latency_ms=10.0),
            dict(arch='v2', batch=1, model='mmdet MobileNetV2 1.0x (eager)', latency_ms=20.0),
            dict(arch='v2', batch=1, model='ours (deploy, torch.compile)', latency_ms=4.0)]
    add_ratios(rows)
    assert [r['vs_timm'] for r in rows] == [0.5, 0.2, 1.0, 2.0, 0.4]
    assert [r['vs_mobilenetv2'] for r in rows] == [0.25, 0.1, 0.5, 1.0, 0.2]


def test_compiled_deploy_equals_eager_deploy_and_is_benchmarked(tmp_path):
    """torch.compile fuses the deployed ops (the benchmark's --compile rows): the same numbers
    as the eager deployed backbone at every output, and the rows the tool promises."""
    import torch

    from ghost_backbones.apps.benchmark import candidates, require_cpp_compiler
    try:
        require_cpp_compiler()
    except RuntimeError as error:  # torch.compile's CPU backend cannot run at all without one
        pytest.skip(str(error))
    models = candidates('v2', 1.0, channels_last=True, compiled=True)
    eager = models['ours (deploy)']().eval()
    compiled = models['ours (deploy, torch.compile)']().eval()
    compiled._orig_mod.load_state_dict(eager.state_dict())
    x = torch.randn(1, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = eager(x), compiled(x)
    assert len(got) == len(expected) == 4
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)

    json_path = tmp_path / 'bench.json'
    out = subprocess.run([sys.executable, tool('analysis', 'benchmark.py'), '--compile', '--no-onnx', '--size', '64',
                          '--archs', 'v2', '--batches', '1', '--warmup', '1', '--iters', '1',
                          '--json', str(json_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    group = {r['model']: r for r in json.loads(json_path.read_text())}
    assert {'ours (deploy, torch.compile)', 'timm ghostnetv2 (torch.compile)', 'timm ghostnetv2 (eager)'} <= set(group)
    compiled_row = group['ours (deploy, torch.compile)']
    timm_eager_ms = group['timm ghostnetv2 (eager)']['latency_ms']
    assert compiled_row['vs_timm'] == pytest.approx(compiled_row['latency_ms'] / timm_eager_ms)
    # params and FLOPs of the module under torch.compile's wrapper (FLOPs need the plain module)
    assert compiled_row['params_m'] == group['ours (deploy)']['params_m']
    assert compiled_row['gflops'] == group['ours (deploy)']['gflops'] > 0


def test_compiled_rows_need_a_cpp_compiler_on_cpu_and_say_so(monkeypatch, tmp_path):
    """Without the compiler inductor would call ($CXX, else g++: its cpp.cxx) the benchmark stops
    before building any model, naming it; a compiler command with arguments is found by its program."""
    from torch._inductor import config as inductor_config

    from ghost_backbones.apps.benchmark import require_cpp_compiler, run_benchmark
    monkeypatch.setattr(inductor_config.cpp, 'cxx', (None, 'g++'))
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(RuntimeError, match=r"C\+\+ compiler and \['g\+\+'\] \(torch inductor's cpp.cxx"):
        run_benchmark(archs=('v2',), compiled=True)
    compiler = tmp_path / 'my-cxx'
    compiler.write_text('#!/bin/sh\n')
    compiler.chmod(0o755)
    monkeypatch.setattr(inductor_config.cpp, 'cxx', (None, 'my-cxx -O2'))
    require_cpp_compiler()
