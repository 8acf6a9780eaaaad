"""The GPU check: one prepared run that a GPU machine does from a fresh clone, in minutes.

``bash tools/analysis/gpu_check.sh`` (or ``make gpu-check``) runs the set-up, then this module:

1. ``mmcv_ops``: the mmcv op tests (``tests/test_startup/test_mmcv_ops.py``) of the device:
   their ``cuda`` cases (nms, sigmoid focal loss, roi_align on CUDA tensors) on a GPU;
2. ``ssdlite``: the synthetic SSDLite-GhostNet trained a few iterations with ``tools/train.py``
   (``--amp`` on CUDA: mmengine's AmpOptimWrapper) and scored with ``tools/test.py``
   (``test_cfg.fp16=True`` on CUDA);
3. ``fpn``: the synthetic Semantic FPN-GhostNet trained a few iterations (AMP on CUDA; the
   training loop's own validation at the end, no tools/test.py);
4. ``benchmark``: backbone latency (fp16 on CUDA) of ours eager / deploy / deploy replayed from
   CUDA graphs against mmdet's MobileNetV2 and timm, ratios measured in one run;
5. ``detector_training``: training img/s of SSDLite-GhostNet vs SSDLite-MobileNetV2 (AMP on CUDA).

Each step is timed and recorded, a failing step does not stop the others (the exit code says
that one failed); everything goes into ONE JSON and a table is printed. ``--device cpu`` runs
the same steps on tiny sizes (what the test suite does).

    python -m ghost_backbones.apps.gpu_check [--device cuda|cpu] [--out outputs/gpu_check]
        [--steps mmcv_ops ssdlite fpn benchmark detector_training] [--setup-seconds S]
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional

STEPS = ('mmcv_ops', 'ssdlite', 'fpn', 'benchmark', 'detector_training')

# How big each step is: on a GPU sized so that the whole check (set-up included) stays under
# 8 minutes; on CPU tiny, so that the test suite runs every step in about a minute.
SIZES = {
    'cuda': dict(num_train=64, num_val=16, image_size=160, det_batch=16, det_epochs=2, seg_batch=8, seg_iters=20,
                 bench_archs=('v1', 'v2', 'v3'), bench_size=320, bench_batches=(1, 8), bench_warmup=20,
                 bench_iters=200, train_batch=32, train_size=320, train_iters=20, train_warmup=5, train_rounds=2),
    'cpu': dict(num_train=4, num_val=2, image_size=64, det_batch=2, det_epochs=1, seg_batch=2, seg_iters=2,
                bench_archs=('v1',), bench_size=64, bench_batches=(1,), bench_warmup=1, bench_iters=5,
                train_batch=2, train_size=64, train_iters=1, train_warmup=1, train_rounds=1),
}


def repo_root() -> str:
    """The checkout this package runs from (its tests and tools live there)."""
    return osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def device_kind(device: str) -> str:
    return 'cuda' if device.startswith('cuda') else 'cpu'


def tool_env(device: str) -> Dict[str, str]:
    """The environment of the subprocesses: on CPU no GPU is visible (the Runner then trains on
    CPU even on a GPU machine)."""
    env = dict(os.environ)
    if device_kind(device) == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


def environment(device: str) -> Dict:
    import torch
    info = dict(python=platform.python_version(), torch=torch.__version__, device=device,
                cuda_available=torch.cuda.is_available(), cuda=torch.version.cuda, cpu_threads=torch.get_num_threads(),
                machine=platform.node())
    if device_kind(device) == 'cuda' and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    cudnn=torch.backends.cudnn.version())
    for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'timm'):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            info[name] = None
    return info


# ----------------------------------------------------------------------------------- the steps

def step_mmcv_ops(device: str, out_dir: str, sizes: Dict) -> Dict:
    """pytest on the mmcv op tests of this device kind (``-k cuda`` / ``-k cpu``)."""
    tests = osp.join(repo_root(), 'tests', 'test_startup', 'test_mmcv_ops.py')
    if not osp.isfile(tests):
        raise FileNotFoundError(f'{tests} is absent: the op tests run from a checkout')
    kind = device_kind(device)
    command = [sys.executable, '-m', 'pytest', tests, '-q', '-p', 'no:cacheprovider', '-k', kind]
    result = subprocess.run(command, capture_output=True, text=True, cwd=repo_root(), env=tool_env(device))
    with open(osp.join(out_dir, 'mmcv_ops.log'), 'w') as f:
        f.write(result.stdout + result.stderr)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ''
    counts = pytest_counts(summary)
    if result.returncode != 0 or not counts.get('passed'):
        raise RuntimeError(f'mmcv op tests on {kind}: {summary or result.stderr[-2000:]}')
    return dict(summary=summary, **counts)


def pytest_counts(summary: str) -> Dict[str, int]:
    """'12 passed, 3 deselected in 4.1s' -> {'passed': 12, 'deselected': 3}."""
    import re
    return {word: int(number) for number, word in re.findall(r'(\d+) (passed|failed|skipped|deselected|error)',
                                                             summary)}


def synthetic_data(out_dir: str, sizes: Dict) -> str:
    from .datasets import make_synthetic
    root = osp.join(out_dir, 'data')
    if not osp.isfile(osp.join(root, 'coco', 'annotations', 'instances_train.json')):
        make_synthetic(root, num_train=sizes['num_train'], num_val=sizes['num_val'], image_size=sizes['image_size'],
                       seed=0)
    return root


def train_and_score(config: str, work_dir: str, options: List[str], device: str, score: bool = True) -> Dict:
    """tools/train.py (``--amp`` on CUDA), then (``score``) tools/test.py (fp16 on CUDA) on its checkpoint."""
    from .main_job import run_command, tool_command
    from .runtime import last_checkpoint
    cuda = device_kind(device) == 'cuda'
    env = tool_env(device)
    start = time.perf_counter()
    run_command(tool_command('train') + [config, '--work-dir', work_dir] + (['--amp'] if cuda else []) +
                ['--cfg-options', *options], osp.join(work_dir, 'train.log'), env=env)
    train_s = time.perf_counter() - start
    if not score:
        return dict(train_s=train_s, amp=cuda, checkpoint=last_checkpoint(work_dir))
    test_options = options + (['test_cfg.fp16=True'] if cuda else [])
    start = time.perf_counter()
    run_command(tool_command('test') + [config, last_checkpoint(work_dir), '--work-dir', work_dir,
                                        '--cfg-options', *test_options], osp.join(work_dir, 'test.log'), env=env)
    test_s = time.perf_counter() - start
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        metrics = json.load(f)
    return dict(train_s=train_s, test_s=test_s, amp=cuda, fp16_test=cuda, metrics=metrics)


def step_ssdlite(device: str, out_dir: str, sizes: Dict) -> Dict:
    from .main_job import DET_CONFIG, data_options, det_schedule_options
    data = synthetic_data(out_dir, sizes)
    batch = sizes['det_batch']
    iters_per_epoch = max(1, sizes['num_train'] // batch)
    options = data_options('mmdet', data) + det_schedule_options(sizes['det_epochs'], iters_per_epoch) + \
        [f'train_dataloader.batch_size={batch}', f'val_dataloader.batch_size={batch}',
         f'test_dataloader.batch_size={batch}']
    result = train_and_score(DET_CONFIG, osp.join(out_dir, 'ssdlite'), options, device)
    result.update(iters=sizes['det_epochs'] * iters_per_epoch, batch=batch, bbox_mAP=result['metrics'].get(
        'coco/bbox_mAP'))
    return result


def step_fpn(device: str, out_dir: str, sizes: Dict) -> Dict:
    from .main_job import SEG_CONFIG, data_options, seg_schedule_options
    data = synthetic_data(out_dir, sizes)
    batch = sizes['seg_batch']
    options = data_options('mmseg', data) + seg_schedule_options(sizes['seg_iters']) + \
        [f'train_dataloader.batch_size={batch}']
    result = train_and_score(SEG_CONFIG, osp.join(out_dir, 'fpn'), options, device, score=False)
    result.update(iters=sizes['seg_iters'], batch=batch)
    return result


def step_benchmark(device: str, out_dir: str, sizes: Dict) -> Dict:
    """Backbone latency: fp16 on CUDA (eager, deploy, deploy from CUDA graphs), fp32 on CPU."""
    from .benchmark import run_benchmark
    cuda = device_kind(device) == 'cuda'
    rows = run_benchmark(archs=sizes['bench_archs'], size=sizes['bench_size'], batches=sizes['bench_batches'],
                         device=device, dtype='float16' if cuda else 'float32', warmup=sizes['bench_warmup'],
                         iters=sizes['bench_iters'], channels_last=not cuda, onnx=False, cuda_graphs=cuda,
                         flops=False)
    return dict(dtype='float16' if cuda else 'float32', size=sizes['bench_size'], rows=rows)


def step_detector_training(device: str, out_dir: str, sizes: Dict) -> Dict:
    from .benchmark import DETECTORS, compare_detector_training, detector_config
    cuda = device_kind(device) == 'cuda'
    rows = compare_detector_training({name: detector_config(path) for name, path in DETECTORS.items()},
                                     rounds=sizes['train_rounds'], device=device, batch=sizes['train_batch'],
                                     size=sizes['train_size'], iters=sizes['train_iters'],
                                     warmup=sizes['train_warmup'], amp=cuda, channels_last=False)
    return dict(rows=rows, ratio=rows[0]['img_per_s'] / rows[1]['img_per_s'])


STEP_FUNCTIONS: Dict[str, Callable[[str, str, Dict], Dict]] = dict(
    mmcv_ops=step_mmcv_ops, ssdlite=step_ssdlite, fpn=step_fpn, benchmark=step_benchmark,
    detector_training=step_detector_training)


def run_step(name: str, fn: Callable, *args) -> Dict:
    print(f'[gpu check] {name} ...', flush=True)
    start = time.perf_counter()
    try:
        result = dict(ok=True, **fn(*args))
    except Exception as error:  # noqa: BLE001  (recorded; the other steps still run)
        result = dict(ok=False, error=f'{type(error).__name__}: {error}'[-3000:], traceback=traceback.format_exc())
        print(f'[gpu check] {name} FAILED: {result["error"][-500:]}', flush=True)
    result['seconds'] = time.perf_counter() - start
    print(f'[gpu check] {name} {"ok" if result["ok"] else "FAILED"} in {result["seconds"]:.1f} s', flush=True)
    return result


def run_gpu_check(out_dir: str = 'outputs/gpu_check', device: str = 'cuda', steps=STEPS,
                  setup_seconds: Optional[float] = None, json_path: Optional[str] = None) -> Dict:
    """Run the steps; write ``gpu_check.json`` (or ``json_path``) and return its content."""
    import torch
    if device_kind(device) == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'--device {device}: torch {torch.__version__} sees no CUDA device '
                           '(use --device cpu for the CPU run)')
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f'unknown steps {sorted(unknown)}; the steps are {STEPS}')
    out_dir = osp.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    sizes = SIZES[device_kind(device)]
    json_path = json_path or osp.join(out_dir, 'gpu_check.json')
    start = time.perf_counter()
    report = dict(environment=environment(device), sizes=sizes, steps={}, ok=True, complete=False,
                  seconds=setup_seconds or 0)
    if setup_seconds is not None:
        report['steps']['setup'] = dict(ok=True, seconds=setup_seconds)
    for name in steps:
        report['steps'][name] = run_step(name, STEP_FUNCTIONS[name], device, out_dir, sizes)
        report['ok'] = all(step['ok'] for step in report['steps'].values())
        report['seconds'] = time.perf_counter() - start + (setup_seconds or 0)
        write_report(report, json_path)
    report['complete'] = True
    write_report(report, json_path)
    report['json'] = json_path
    return report


def write_report(report: Dict, json_path: str) -> None:
    """Written after every step: a run cut short by the machine's time limit keeps the steps it
    finished (``complete`` is false until the last one)."""
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=2, default=str)


def step_note(name: str, step: Dict) -> str:
    if not step['ok']:
        return step['error'].splitlines()[0][:120]
    if name == 'mmcv_ops':
        return step['summary']
    if name == 'ssdlite':
        return f"{step['iters']} iters (batch {step['batch']}, amp={step['amp']}), bbox mAP {step['bbox_mAP']}"
    if name == 'fpn':
        return f"{step['iters']} iters (batch {step['batch']}, amp={step['amp']}), trained in {step['train_s']:.0f} s"
    if name == 'benchmark':
        return f"{len(step['rows'])} rows, {step['dtype']}, {step['size']}x{step['size']}"
    if name == 'detector_training':
        return f"GhostNet / MobileNetV2 training throughput {step['ratio']:.2f}"
    return ''


def format_report(report: Dict) -> str:
    from .benchmark import format_rows
    env = report['environment']
    lines = [f"GPU check on {env.get('gpu') or 'CPU'} (torch {env['torch']}, CUDA {env['cuda']}, "
             f"device {env['device']}): {'all steps ok' if report['ok'] else 'SOME STEPS FAILED'}, "
             f"{report['seconds']:.0f} s", '', '| step | status | seconds | result |', '|---|---|---|---|']
    for name, step in report['steps'].items():
        lines.append(f"| {name} | {'ok' if step['ok'] else 'FAILED'} | {step['seconds']:.1f} | "
                     f"{step_note(name, step)} |")
    bench = report['steps'].get('benchmark')
    if bench and bench['ok']:
        lines += ['', f"Backbone latency ({bench['dtype']}, {bench['size']}x{bench['size']}, median of one run):",
                  format_rows(bench['rows'])]
    train = report['steps'].get('detector_training')
    if train and train['ok']:
        lines += ['', 'Detector training throughput:']
        lines += [f"  {r['name']:28s} {r['img_per_s']:8.1f} img/s ({r['s_per_iter'] * 1000:.0f} ms/iter, "
                  f"batch {r['batch']}, {r['size']}x{r['size']}, amp={r['amp']})" for r in train['rows']]
    lines += ['', f"JSON: {report['json']}"]
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda', help='cuda (default), cuda:N or cpu (tiny sizes)')
    parser.add_argument('--out', default='outputs/gpu_check', help='output folder (logs, work dirs, the JSON)')
    parser.add_argument('--json', help='the JSON file (default: OUT/gpu_check.json)')
    parser.add_argument('--steps', nargs='+', default=list(STEPS), choices=STEPS)
    parser.add_argument('--setup-seconds', type=float, help='time the set-up took (the shell wrapper passes it)')
    args = parser.parse_args(argv)
    report = run_gpu_check(args.out, args.device, args.steps, args.setup_seconds, args.json)
    print('\n' + format_report(report), flush=True)
    return 0 if report['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
