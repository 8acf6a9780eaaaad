"""Side-by-side latency of GhostNet backbones: ours (training structure and deploy mode),
timm's counterpart and mmdet's MobileNetV2, measured in one process; plus onnxruntime.

Every number is a median over many timed runs after a warm-up, with fixed threads, so that
the ratios (ours / timm, ours / MobileNetV2) compare like with like on the same machine.
"""
import os.path as osp
import shlex
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np
import torch
import torch.nn as nn

from ..models import ARCHS, GhostNet
from .analysis import count_gflops
from .configs import config_file
from .deploy import deploy_backbone, export_onnx, onnxruntime_session

TIMM_PREFIX = {'v1': 'ghostnet', 'v2': 'ghostnetv2', 'v3': 'ghostnetv3'}
# the detectors of the training-throughput benchmark: ours and mmdet's own counterpart
DETECTORS = {
    'SSDLite-GhostNet 1.0x': 'ghostnet/ssdlite_ghostnet-1.0x_8xb24-600e_coco-320.py',
    'SSDLite-MobileNetV2 1.0x': 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
}


class Candidate(NamedTuple):
    """A model timed in the benchmark, with what its rows report."""
    model: nn.Module
    channels_last_input: bool
    params_m: float
    gflops: Optional[float]


def detector_config(path: str) -> str:
    """A shipped config of ours, or one of mmdet's by its ``mmdet::`` name."""
    if path.startswith('mmdet::'):
        import mmdet
        return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', path[len('mmdet::'):])
    return config_file(path)


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


class CudaGraphed(nn.Module):
    """A module replayed from CUDA graphs (``torch.cuda.graphs``), one graph per input shape:
    the first call with a shape warms the module up on a side stream and captures it; every call
    copies its input into the graph's static input and replays. The outputs are the graph's
    static tensors, overwritten by the next call (clone them to keep them). Inference only."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.graphs = {}

    def capture(self, x: torch.Tensor):
        static_input = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.module(static_input)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.module(static_input)
        return graph, static_input, static_output

    def forward(self, x: torch.Tensor):
        if not x.is_cuda:
            raise RuntimeError('CUDA graphs need a CUDA input')
        key = (tuple(x.shape), x.dtype, x.stride())
        if key not in self.graphs:
            self.graphs[key] = self.capture(x)
        graph, static_input, static_output = self.graphs[key]
        static_input.copy_(x)
        graph.replay()
        return static_output


def require_cpp_compiler() -> None:
    """torch.compile's CPU backend builds C++ kernels with the compiler of inductor's
    ``cpp.cxx`` ($CXX, else g++): say so before the first call fails deep in inductor."""
    from torch._inductor import config as inductor_config
    cxx = inductor_config.cpp.cxx
    commands = [c for c in (cxx if isinstance(cxx, (list, tuple)) else (cxx,)) if c]
    if not any(shutil.which(shlex.split(command)[0]) for command in commands):
        raise RuntimeError(f'torch.compile on CPU needs a C++ compiler and {commands} (torch inductor\'s cpp.cxx, '
                           'from $CXX) is not on PATH; install one (e.g. apt install g++), set CXX, or leave out '
                           'the compiled models')


def candidates(arch: str, width: float, channels_last: bool, out_stride: int = 32,
               cuda_graphs: bool = False, compiled: bool = False) -> Dict[str, Callable[[], nn.Module]]:
    """Ours at ``out_stride`` (labelled when not 32) beside timm and MobileNetV2 at stride 32;
    with ``cuda_graphs``, the deployed backbone and MobileNetV2 replayed from CUDA graphs too;
    with ``compiled``, ours deployed and timm through ``torch.compile`` (fused kernels: eager
    PyTorch pays a fixed cost per op call, which is what a deployed GhostNet at batch 1 is bound
    by on a CPU)."""
    tag = '' if out_stride == 32 else f', out_stride {out_stride}'

    def deployed(out_indices=(2, 4, 6, 9)):
        model = deploy_backbone(GhostNet(arch=arch, widen_factor=width, out_indices=out_indices,
                                         out_stride=out_stride))
        return model.to(memory_format=torch.channels_last) if channels_last else model
    models = {
        f'ours (training structure{tag})': lambda: GhostNet(arch=arch, widen_factor=width, out_stride=out_stride),
        f'ours (deploy{tag})': deployed,
        # timm's features_only stops after blocks[7]: the same work as these taps
        f"ours (deploy, timm's taps 1,3,5,7{tag})": lambda: deployed((1, 3, 5, 7)),
        f'timm {TIMM_PREFIX[arch]} (eager)': lambda: timm_backbone(arch, width),
        'mmdet MobileNetV2 1.0x (eager)': mobilenet_v2,
    }
    if cuda_graphs:
        models[f'ours (deploy, CUDA graphs{tag})'] = lambda: CudaGraphed(deployed())
        models['mmdet MobileNetV2 1.0x (CUDA graphs)'] = lambda: CudaGraphed(mobilenet_v2())
    if compiled:  # one static graph per input shape, as for a fixed deployment size
        models[f'ours (deploy, torch.compile{tag})'] = lambda: torch.compile(deployed(), dynamic=False)
        models[f'timm {TIMM_PREFIX[arch]} (torch.compile)'] = lambda: torch.compile(timm_backbone(arch, width),
                                                                                   dynamic=False)
    return models


def uncompiled(model: nn.Module) -> nn.Module:
    """The plain module under a CUDA-graph or torch.compile wrapper: what params and FLOPs count."""
    if isinstance(model, CudaGraphed):
        return model.module
    return getattr(model, '_orig_mod', model)


def run_benchmark(archs=ARCHS, width: float = 1.0, size: int = 320, batches=(1, 8),
                  device: str = 'cpu', dtype: str = 'float32', threads: int = 2, warmup: int = 10,
                  iters: int = 50, channels_last: bool = True, onnx: bool = True, rounds: int = 5,
                  out_stride: int = 32, cuda_graphs: Optional[bool] = None, flops: bool = True,
                  compiled: bool = False) -> List[Dict]:
    """One row per (arch, model, batch): median latency (ms), throughput (img/s), params, FLOPs.

    The models of one (arch, batch) are timed in ``rounds`` interleaved rounds, so that a slow
    spell of the machine hits all of them alike; a row's latency is the median of its round
    medians, and ``spread`` is (slowest - fastest round median) / that median. Ours runs at
    ``out_stride``; the CUDA-graph rows (default: on CUDA) need a CUDA device. ``flops=False`` skips the FLOP count
    (a trace of every model on CPU, seconds each). ``compiled`` adds ours (deploy) and timm
    through ``torch.compile``, compiled for each batch size during its first round's warm-up;
    ratios stay against timm eager.
    """
    if cuda_graphs is None:
        cuda_graphs = device.startswith('cuda')
    if cuda_graphs and not device.startswith('cuda'):
        raise ValueError('cuda_graphs=True needs a CUDA device')
    if compiled and not device.startswith('cuda'):
        require_cpp_compiler()
    prepare_device(device, threads)
    torch_dtype = getattr(torch, dtype)
    with_onnx = onnx and device == 'cpu' and dtype == 'float32' and out_stride == 32
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            models = {}
            for name, build in candidates(arch, width, channels_last, out_stride, cuda_graphs, compiled).items():
                model = build()
                model.eval()  # (mmdet's MobileNetV2.train returns None: no chaining)
                counted = uncompiled(model)
                models[name] = Candidate(model.to(device=device, dtype=torch_dtype),
                                         channels_last and name.startswith('ours (deploy'), count_params(counted),
                                         gflops_or_none(counted, size) if flops else None)
            if with_onnx:
                models['ours (deploy, onnxruntime)'] = onnxruntime_candidate(arch, width, size, threads, tmp)
            rows += time_candidates(arch, models, size, batches, device, torch_dtype, warmup, iters, rounds, out_stride)
    add_ratios(rows)
    return rows


class OnnxRuntimeBackbone(nn.Module):
    """An onnxruntime session called like the PyTorch candidates (tensor in, arrays out), so that
    it is timed in the same interleaved rounds as they are: ratios to timm from one stretch of
    the machine's time, not from two."""

    def __init__(self, path: str, threads: int):
        super().__init__()
        self.session = onnxruntime_session(path, threads)

    def forward(self, x: torch.Tensor):
        return self.session.run(None, {'images': x.numpy()})


def onnxruntime_candidate(arch: str, width: float, size: int, threads: int, work_dir: str) -> Candidate:
    model = deploy_backbone(GhostNet(arch=arch, widen_factor=width))
    path = osp.join(work_dir, f'{arch}.onnx')
    export_onnx(model, torch.randn(1, 3, size, size), path)
    return Candidate(OnnxRuntimeBackbone(path, threads), False, count_params(model), None)


def time_candidates(arch, models: Dict[str, Candidate], size, batches, device, torch_dtype, warmup, iters, rounds,
                    out_stride) -> List[Dict]:
    """The models of one arch timed per batch in ``rounds`` interleaved rounds; one row each."""
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device, dtype=torch_dtype)
        inputs = {name: x.contiguous(memory_format=torch.channels_last) if c.channels_last_input else x
                  for name, c in models.items()}
        times = {name: [] for name in models}
        for _ in range(rounds):
            for name, candidate in models.items():
                times[name].append(median_latency_ms(candidate.model, inputs[name], device, warmup,
                                                     max(1, iters // rounds)))
        for name, candidate in models.items():
            ms = statistics.median(times[name])
            rows.append(dict(arch=arch, model=name, batch=batch, latency_ms=ms, img_per_s=batch * 1000 / ms,
                             params_m=candidate.params_m, gflops=candidate.gflops,
                             spread=(max(times[name]) - min(times[name])) / ms,
                             out_stride=out_stride if name.startswith('ours') else 32))
    return rows


def add_ratios(rows: List[Dict]) -> None:
    """ours / timm and ours / MobileNetV2 latency, within each (arch, batch)."""
    for row in rows:
        group = [r for r in rows if r['arch'] == row['arch'] and r['batch'] == row['batch']]
        timm = next(r for r in group if r['model'].startswith('timm') and r['model'].endswith('(eager)'))
        mobilenet = next(r for r in group if r['model'] == 'mmdet MobileNetV2 1.0x (eager)')
        row['vs_timm'] = row['latency_ms'] / timm['latency_ms']
        row['vs_mobilenetv2'] = row['latency_ms'] / mobilenet['latency_ms']


def format_rows(rows: List[Dict]) -> str:
    """Markdown table; ``spread`` is (slowest - fastest round) / median of each row's rounds."""
    header = '| arch | model | batch | median ms | img/s | / timm | / MobileNetV2 | params (M) | GFLOPs | spread |'
    lines = [header, '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        gflops = f"{r['gflops']:.3f}" if r['gflops'] is not None else '-'
        spread = f"{r['spread']:.0%}" if r.get('spread') is not None else '-'
        lines.append(f"| {r['arch']} | {r['model']} | {r['batch']} | {r['latency_ms']:.1f} | {r['img_per_s']:.1f} "
                     f"| {r['vs_timm']:.2f} | {r['vs_mobilenetv2']:.2f} | {r['params_m']:.2f} | {gflops} | {spread} |")
    return '\n'.join(lines)


def detector_train_throughput(config: str, device: str = 'cpu', batch: int = 8, size: int = 320, iters: int = 20,
                              warmup: int = 5, amp: bool = False, channels_last: bool = False,
                              compile_model: bool = False, threads: int = 2) -> Dict:
    """Training images per second of a detector config on random synthetic batches."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from mmengine.logging import MessageHub

    from .deploy import build_from_config
    prepare_device(device, threads)
    MessageHub.get_current_instance().update_info('iter', 0)  # as a Runner does (YOLOX's batch resize reads it)
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


def compare_detector_training(detectors: Dict[str, str], rounds: int = 1, **options) -> List[Dict]:
    """Training throughput of several detectors, measured in interleaved rounds; each keeps its
    best round, so that a burst of load on a shared machine does not favour whichever ran alone."""
    measured = [[dict(name=name, **detector_train_throughput(path, **options)) for name, path in detectors.items()]
                for _ in range(rounds)]
    return [min((round_[k] for round_ in measured), key=lambda row: row['s_per_iter'])
            for k in range(len(detectors))]


# ---------------------------------------------------------------------------- deployment variants

class TorchSession:
    """A PyTorch module behind onnxruntime's ``run(None, {'images': array})``, so that the same
    code times and scores PyTorch and ONNX Runtime."""

    def __init__(self, module: nn.Module):
        self.module = module.eval()

    def run(self, output_names, feeds):
        with torch.inference_mode():
            outputs = self.module(torch.from_numpy(feeds['images']))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [o.numpy() for o in outputs]


def deployment_variants(config: str, checkpoint: str, work_dir: str, size=None, threads: int = 2,
                        calib_images: int = 32, cfg_options: Optional[dict] = None) -> Dict[str, Dict[str, object]]:
    """For the backbone and the whole model (end to end): PyTorch eager FP32, PyTorch deploy
    FP32, ONNX Runtime FP32 and ONNX Runtime INT8, each with a ``run`` method; the whole model's
    input size is ``size`` (default: the config's) and its preprocessing spec comes along.
    ``cfg_options`` (as ``--cfg-options``) point the INT8 calibration at the data."""
    import copy

    from mmengine.config import Config

    from .deploy import deploy_backbone, export_end2end, onnxruntime_session, preprocessing_spec
    from .end2end import end2end
    from .quantize import calibration_inputs, quantize_int8
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    spec = preprocessing_spec(cfg, size)
    height, width = spec['input_size']
    model = build_whole(config, checkpoint)
    whole_path = osp.join(work_dir, f'whole_{height}x{width}.onnx')
    _, spec = export_end2end(config, checkpoint, whole_path, (height, width))  # its spec: clip_boxes of the head
    backbone_path = osp.join(work_dir, f'backbone_{height}x{width}.onnx')
    export_onnx(deploy_backbone(copy.deepcopy(model.backbone)), torch.zeros(1, 3, height, width), backbone_path)
    calibration = list(calibration_inputs(resized_config(cfg, (height, width)), model, calib_images, (height, width)))
    for path in (whole_path, backbone_path):
        quantize_int8(path, path.replace('.onnx', '.int8.onnx'), iter(calibration))
    variants = {}
    for part, path, eager in (('backbone', backbone_path, model.backbone), ('whole', whole_path, end2end(model))):
        variants[part] = {
            'PyTorch eager FP32': TorchSession(copy.deepcopy(eager)),
            'PyTorch deploy FP32': TorchSession(deploy_backbone(copy.deepcopy(eager))),
            'ONNX Runtime FP32': onnxruntime_session(path, threads),
            'ONNX Runtime INT8': onnxruntime_session(path.replace('.onnx', '.int8.onnx'), threads),
        }
    return dict(variants, spec=spec)


def build_whole(config: str, checkpoint: str) -> nn.Module:
    from .deploy import build_from_config
    return build_from_config(config, checkpoint)


def resized_config(cfg, size):
    """The config with its test-time Resize set to ``size`` (height, width): calibration images
    for a model exported at another size than the config's."""
    import copy

    from .deploy import test_pipeline
    cfg = copy.deepcopy(cfg)
    for transform in test_pipeline(cfg):
        if transform['type'] in ('Resize', 'RandomResize'):
            transform['scale'] = (size[1], size[0])
    pipeline = test_pipeline(cfg)
    if not any(t['type'] in ('Resize', 'RandomResize') for t in pipeline):
        pipeline.insert(1, dict(type='Resize', scale=(size[1], size[0]), keep_ratio=False))
    cfg.test_dataloader.dataset.pipeline = pipeline
    return cfg


def session_latency_ms(session, size, warmup: int, iters: int) -> float:
    x = np.random.RandomState(0).randn(1, 3, *size).astype(np.float32)
    return median_latency_ms(lambda a: session.run(None, {'images': a}), x, 'cpu', warmup, iters)


def deployment_rows(variants: Dict, warmup: int = 10, iters: int = 50) -> List[Dict]:
    """Median latency (ms) at batch 1 of each variant of backbone and whole model; ratios to
    ONNX Runtime FP32."""
    size = variants['spec']['input_size']
    rows = []
    for part in ('backbone', 'whole'):
        times = {name: session_latency_ms(s, size, warmup, iters) for name, s in variants[part].items()}
        for name, ms in times.items():
            rows.append(dict(part=part, variant=name, size=list(size), latency_ms=ms,
                             vs_onnxruntime_fp32=ms / times['ONNX Runtime FP32']))
    return rows


def mean_iou(pairs, num_classes: int, ignore_index: int = 255) -> float:
    """mmseg's mIoU (in %) over (predicted, truth) label maps: per-class intersection and union
    summed over all images, then averaged over the classes that occur."""
    intersection, union = np.zeros(num_classes), np.zeros(num_classes)
    for predicted, truth in pairs:
        valid = truth != ignore_index
        for label in range(num_classes):
            in_truth, in_prediction = (truth == label) & valid, (predicted == label) & valid
            intersection[label] += (in_truth & in_prediction).sum()
            union[label] += (in_truth | in_prediction).sum()
    return float(np.nanmean(np.where(union > 0, intersection / np.maximum(union, 1), np.nan)) * 100)
