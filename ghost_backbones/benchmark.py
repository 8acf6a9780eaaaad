"""Side-by-side latency of GhostNet backbones: ours (training structure and deploy mode),
timm's counterpart and mmdet's MobileNetV2, measured in one process; plus onnxruntime.

Every number is a median over many timed runs after a warm-up, with fixed threads, so that
the ratios (ours / timm, ours / MobileNetV2) compare like with like on the same machine.
"""
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from .analysis import count_gflops
from .deploy import deploy_backbone, export_onnx, onnxruntime_session
from .models import GhostNet

TIMM_PREFIX = {'v1': 'ghostnet', 'v2': 'ghostnetv2', 'v3': 'ghostnetv3'}


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def prepare_device(device: str, threads: int) -> None:
    """Fixed CPU threads; on a GPU, cuDNN picks its fastest kernels for these fixed shapes."""
    if device.startswith('cuda'):
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(threads)


def median_latency_ms(fn: Callable, x, device: str, warmup: int, iters: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        synchronize(device)
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn(x)
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def timm_backbone(arch: str, width: float) -> nn.Module:
    from timm.models import ghostnet as timm_ghostnet
    name = f'{TIMM_PREFIX[arch]}_{int(round(width * 100)):03d}'
    return timm_ghostnet._create_ghostnet(name, width=width, version=arch, features_only=True)


def mobilenet_v2() -> nn.Module:
    from mmdet.models.backbones import MobileNetV2
    return MobileNetV2(widen_factor=1.0, out_indices=(2, 4, 7))


def count_params(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def gflops_or_none(model: nn.Module, size: int) -> Optional[float]:
    """FLOPs are informative only here: a model mmengine cannot trace gets '-'."""
    try:
        return count_gflops(model, size)
    except Exception:  # noqa: BLE001
        return None


def candidates(arch: str, width: float, channels_last: bool) -> Dict[str, Callable[[], nn.Module]]:
    def deployed(out_indices=(2, 4, 6, 9)):
        model = deploy_backbone(GhostNet(arch=arch, widen_factor=width, out_indices=out_indices))
        return model.to(memory_format=torch.channels_last) if channels_last else model
    return {
        'ours (training structure)': lambda: GhostNet(arch=arch, widen_factor=width),
        'ours (deploy)': deployed,
        # timm's features_only stops after blocks[7]: the same work as these taps
        "ours (deploy, timm's taps 1,3,5,7)": lambda: deployed((1, 3, 5, 7)),
        f'timm {TIMM_PREFIX[arch]} (eager)': lambda: timm_backbone(arch, width),
        'mmdet MobileNetV2 1.0x (eager)': mobilenet_v2,
    }


def run_benchmark(archs=('v1', 'v2', 'v3'), width: float = 1.0, size: int = 320, batches=(1, 8),
                  device: str = 'cpu', dtype: str = 'float32', threads: int = 2, warmup: int = 10,
                  iters: int = 50, channels_last: bool = True, onnx: bool = True, rounds: int = 5) -> List[Dict]:
    """One row per (arch, model, batch): median latency (ms), throughput (img/s), params, FLOPs.

    The models of one (arch, batch) are timed in ``rounds`` interleaved rounds, so that a slow
    spell of the machine hits all of them alike; the median is over all timed runs.
    """
    prepare_device(device, threads)
    torch_dtype = getattr(torch, dtype)
    rows = []
    for arch in archs:
        models = {}
        for name, build in candidates(arch, width, channels_last).items():
            model = build()
            model.eval()  # (mmdet's MobileNetV2.train returns None: no chaining)
            params, gflops = count_params(model), gflops_or_none(model, size)
            channels_last_input = channels_last and name.startswith('ours (deploy')
            models[name] = (model.to(device=device, dtype=torch_dtype), channels_last_input, params, gflops)
        for batch in batches:
            x = torch.randn(batch, 3, size, size, device=device, dtype=torch_dtype)
            inputs = {name: x.contiguous(memory_format=torch.channels_last) if cl else x
                      for name, (_, cl, _, _) in models.items()}
            times = {name: [] for name in models}
            for _ in range(rounds):
                for name, (model, _, _, _) in models.items():
                    times[name].append(median_latency_ms(model, inputs[name], device, warmup, max(1, iters // rounds)))
            for name, (_, _, params, gflops) in models.items():
                ms = statistics.median(times[name])
                rows.append(dict(arch=arch, model=name, batch=batch, latency_ms=ms, img_per_s=batch * 1000 / ms,
                                 params_m=params, gflops=gflops))
        if onnx and device == 'cpu' and dtype == 'float32':
            rows += onnx_rows(arch, width, size, batches, threads, warmup, iters)
    add_ratios(rows)
    return rows


def onnx_rows(arch, width, size, batches, threads, warmup, iters) -> List[Dict]:
    import numpy as np
    model = deploy_backbone(GhostNet(arch=arch, widen_factor=width))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = f'{tmp}/{arch}.onnx'
        export_onnx(model, torch.randn(1, 3, size, size), path)
        session = onnxruntime_session(path, threads)
        for batch in batches:
            x = np.random.randn(batch, 3, size, size).astype(np.float32)
            ms = median_latency_ms(lambda a: session.run(None, {'images': a}), x, 'cpu', warmup, iters)
            rows.append(dict(arch=arch, model='ours (deploy, onnxruntime)', batch=batch, latency_ms=ms,
                             img_per_s=batch * 1000 / ms, params_m=count_params(model), gflops=None))
    return rows


def add_ratios(rows: List[Dict]) -> None:
    """ours / timm and ours / MobileNetV2 latency, within each (arch, batch)."""
    for row in rows:
        group = [r for r in rows if r['arch'] == row['arch'] and r['batch'] == row['batch']]
        timm = next(r for r in group if r['model'].startswith('timm'))
        mobilenet = next(r for r in group if r['model'].startswith('mmdet MobileNetV2'))
        row['vs_timm'] = row['latency_ms'] / timm['latency_ms']
        row['vs_mobilenetv2'] = row['latency_ms'] / mobilenet['latency_ms']


def format_rows(rows: List[Dict]) -> str:
    header = '| arch | model | batch | median ms | img/s | / timm | / MobileNetV2 | params (M) | GFLOPs |'
    lines = [header, '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        gflops = f"{r['gflops']:.3f}" if r['gflops'] is not None else '-'
        lines.append(f"| {r['arch']} | {r['model']} | {r['batch']} | {r['latency_ms']:.1f} | {r['img_per_s']:.1f} "
                     f"| {r['vs_timm']:.2f} | {r['vs_mobilenetv2']:.2f} | {r['params_m']:.2f} | {gflops} |")
    return '\n'.join(lines)


def detector_train_throughput(config: str, device: str = 'cpu', batch: int = 8, size: int = 320, iters: int = 20,
                              warmup: int = 5, amp: bool = False, channels_last: bool = False,
                              compile_model: bool = False, threads: int = 2) -> Dict:
    """Training images per second of a detector config on random synthetic batches."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from .deploy import build_from_config
    prepare_device(device, threads)
    model = build_from_config(config).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        # the network parts only: mmdet's loss (per-image target assignment in Python) breaks the
        # graph so often that compiling the whole loss-mode forward took minutes on its own
        for part in (model.backbone, model.neck, model.bbox_head):
            part.compile()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device, enabled=amp and device.startswith('cuda'))
    gen = torch.Generator().manual_seed(0)
    num_classes = model.bbox_head.num_classes
    samples = []
    for _ in range(batch):
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1., 1.),
                                             pad_shape=(size, size), batch_input_shape=(size, size)))
        xy = torch.rand(3, 2, generator=gen) * size * 0.6
        wh = torch.rand(3, 2, generator=gen) * size * 0.3 + size * 0.1
        sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1).to(device),
                                           labels=torch.randint(0, num_classes, (3,), generator=gen).to(device))
        samples.append(sample)
    images = [torch.randint(0, 255, (3, size, size), generator=gen, dtype=torch.uint8) for _ in range(batch)]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)

    def step():
        with torch.autocast(device_type=device.split(':')[0], dtype=torch.float16, enabled=amp):
            loss, _ = model.parse_losses(model(**data, mode='loss'))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / iters
    return dict(config=config, device=device, batch=batch, size=size, amp=amp, s_per_iter=seconds,
                img_per_s=batch / seconds)
