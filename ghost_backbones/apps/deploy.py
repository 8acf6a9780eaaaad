"""Deployment: the backbone in deploy mode, whole detectors / segmenters, to ONNX, checked
against PyTorch with onnxruntime; end-to-end models (post-processing in the graph) with their
preprocessing in the ONNX metadata, for tools/deploy/onnx_infer.py.

Exports use torch's TorchScript-based ONNX exporter (``dynamo=False``: the dynamo exporter
needs onnxscript) with a dynamic batch axis.
"""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..models import GhostNet


class DetectorRawOutputs(nn.Module):
    """A single-stage detector up to its raw head outputs: per level, class scores then boxes.

    Box decoding and NMS stay outside the graph (mmdet's ``predict_by_feat`` on the outputs),
    the usual split for SSD / YOLO heads whose post-processing ONNX cannot express portably.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        head_outputs = self.detector.bbox_head(self.detector.extract_feat(images))
        return tuple(t for level_outputs in head_outputs for t in level_outputs)


class SegmentorLogits(nn.Module):
    """An encoder-decoder segmenter to per-pixel class logits at the input resolution."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.segmentor.decode_head(self.segmentor.extract_feat(images))
        return nn.functional.interpolate(logits, size=images.shape[-2:], mode='bilinear',
                                         align_corners=self.segmentor.align_corners)


class ClassifierLogits(nn.Module):
    """An image classifier (mmpretrain) to its class logits."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images, mode='tensor')


def deploy_backbone(model: nn.Module) -> nn.Module:
    """Switch every GhostNet inside ``model`` to deploy mode (BN folded, v3 re-parameterised)."""
    model.eval()
    for module in model.modules():
        if isinstance(module, GhostNet):
            module.switch_to_deploy()
    return model


def export_onnx(module: nn.Module, example: torch.Tensor, path: str, output_names: Sequence[str] = None,
                opset: int = 17) -> List[str]:
    """Export with a dynamic batch axis; returns the output names."""
    module.eval()
    with torch.no_grad():
        outputs = module(example)
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    output_names = list(output_names or [f'output_{i}' for i in range(count)])
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    dynamic_axes = {name: {0: 'batch'} for name in ['images'] + output_names}
    torch.onnx.export(module, (example,), path, input_names=['images'], output_names=output_names,
                      dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    return output_names


def onnxruntime_session(path: str, threads: int = 0):
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def compare_with_onnxruntime(module: nn.Module, path: str, images: torch.Tensor) -> float:
    """Largest difference between PyTorch and onnxruntime outputs on ``images``, in units of
    each output's scale (its largest magnitude, at least 1): float32 rounding grows with the
    magnitude of deep features, so this is the absolute difference for features of size 1."""
    with torch.no_grad():
        expected = module.eval()(images)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    got = onnxruntime_session(path).run(None, {'images': images.numpy()})
    if len(got) != len(expected):
        raise AssertionError(f'{path}: {len(got)} ONNX outputs, {len(expected)} PyTorch outputs')
    diffs = []
    for g, e in zip(got, expected):
        if g.shape != tuple(e.shape):
            raise AssertionError(f'{path}: ONNX output shape {g.shape} != PyTorch {tuple(e.shape)}')
        scale = max(1.0, float(e.abs().max()))
        diffs.append(float(np.abs(g - e.numpy()).max()) / scale)
    return max(diffs)


def build_from_config(config: str, checkpoint: str = None, cfg_options: dict = None) -> nn.Module:
    """A detector / segmenter / classifier from a config (and optionally its trained weights), on
    CPU, SyncBN as BN; without a checkpoint the weights are the model's initialisation (enough for
    shapes, export, FLOPs). ``cfg_options``: as ``--cfg-options``."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    from .runtime import replace_sync_bn
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.default_scope)
    replace_sync_bn(cfg.model)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry.build(cfg.model)
    if checkpoint:
        load_trained_weights(model, checkpoint, cfg)
    return model.eval()


def load_trained_weights(model: nn.Module, checkpoint: str, cfg) -> None:
    """The weights tools/test.py evaluates: with an EMAHook in the config (RTMDet, YOLOX), the
    checkpoint's averaged weights, swapped in as mmengine's EMAHook does on loading."""
    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
    data = _load_checkpoint(checkpoint, map_location='cpu')
    hooks = [h.get('type') for h in cfg.get('custom_hooks') or []]
    if isinstance(data, dict) and 'ema_state_dict' in data and any(str(h).endswith('EMAHook') for h in hooks):
        weights, averaged = dict(data['state_dict']), data['ema_state_dict']
        for key, value in averaged.items():
            if key.startswith('module.'):
                weights[key[len('module.'):]] = value
        data = dict(data, state_dict=weights)
    _load_checkpoint_to_model(model, data)


def wrap_for_export(model: nn.Module) -> nn.Module:
    if isinstance(model, GhostNet):
        return model
    if hasattr(model, 'bbox_head'):
        return DetectorRawOutputs(model)
    if hasattr(model, 'decode_head'):
        return SegmentorLogits(model)
    if hasattr(model, 'head') and hasattr(model, 'backbone'):
        return ClassifierLogits(model)
    raise ValueError(f'cannot export {type(model).__name__}: not a GhostNet, detector, segmenter or classifier')


# ---------------------------------------------------------------------------- end-to-end models

METADATA_KEY = 'ghost_backbones'


def test_pipeline(cfg) -> list:
    dataset = cfg.test_dataloader.dataset
    return list(dataset.get('pipeline') or dataset.get('dataset', {}).get('pipeline', []))


def dataset_metainfo(cfg) -> dict:
    """Class names and palette of the config's test dataset (its metainfo, else its class's)."""
    from mmengine.registry import DATASETS
    dataset = cfg.test_dataloader.dataset
    metainfo = dict(dataset.get('metainfo') or {})
    if 'classes' not in metainfo or 'palette' not in metainfo:
        registry = __import__(f'{cfg.default_scope}.registry', fromlist=['DATASETS']).DATASETS
        __import__(f'{cfg.default_scope}.datasets')
        defaults = dict(getattr(registry.get(dataset.type) or DATASETS.get(dataset.type), 'METAINFO', {}))
        metainfo = dict(defaults, **metainfo)
    classes = list(metainfo['classes'])
    palette = [list(map(int, c)) for c in metainfo.get('palette') or []]
    if len(palette) < len(classes):
        rng = np.random.RandomState(0)
        palette += rng.randint(0, 256, size=(len(classes) - len(palette), 3)).tolist()
    return dict(classes=classes, palette=palette)


def preprocessing_spec(cfg, size=None, clip_boxes: bool = True) -> dict:
    """What the standalone runner needs to feed the network as mmdet / mmseg do, read from the
    test pipeline and the data preprocessor, in the order they apply:

    * ``resize``: 'exact' (to ``resize_size``, height and width) or 'keep_ratio' (mmcv's
      ``imrescale``: the largest factor that keeps the long edge within max(``resize_size``) and
      the short edge within min(``resize_size``), sizes rounded as mmcv rounds them; an image
      that would not fit ``input_size`` so, only possible with an oblong ``resize_size``, is
      scaled to fit it instead); bilinear as OpenCV;
    * ``pad``: the pipeline's ``Pad`` on the resized image, before normalisation: ``mode`` 'size'
      (to ``size``, height and width), 'square' (to its longer edge), optionally then 'divisor';
      ``value`` per channel of the loaded (BGR) image; absent when the pipeline has none;
    * ``mean`` / ``std`` / ``channel_order`` of the data preprocessor, then its batch padding to
      the network input (``input_size``, height and width, rounded up to its ``pad_size_divisor``)
      with ``pad_value``, after normalisation;
    * ``clip_boxes``: whether mmdet clips the detector's boxes (the runner then clips them to the
      original image); the class names and palette.

    ``size`` (H, W) exports at another size: the resize goes to it (and a fixed-size Pad too)."""
    pipeline = test_pipeline(cfg)
    resize = next((t for t in pipeline if t['type'] in ('Resize', 'RandomResize')), None)
    pad = next((t for t in pipeline if t['type'] == 'Pad'), None)
    preprocessor = cfg.model.data_preprocessor
    divisor = int(preprocessor.get('pad_size_divisor', 1) or 1)
    if resize is not None and resize.get('interpolation', 'bilinear') != 'bilinear':
        raise ValueError(f'the runner resizes bilinearly, the test pipeline with {resize["interpolation"]}')
    if size is not None:
        resize_size = (size, size) if isinstance(size, int) else tuple(size)
    elif resize is not None:
        resize_size = (resize['scale'][1], resize['scale'][0])  # mmcv scales are (width, height)
    elif preprocessor.get('size'):
        resize_size = tuple(preprocessor['size'])
    else:
        raise ValueError('the test pipeline has no Resize and the data preprocessor no size: give --size')
    keep_ratio = resize is not None and resize.get('keep_ratio', False)
    # keep_ratio with a square scale: every rescaled image fits the input, as in mmdet; with an
    # oblong one (1333 x 800) an image of the other orientation does not, and the runner then
    # scales it down to fit (the one case that differs from mmdet's pipeline)
    input_size = resize_size
    pad_spec = None
    if pad is not None:
        value = pad.get('pad_val', dict(img=0))
        value = value.get('img', 0) if isinstance(value, dict) else value
        value = [float(value)] * 3 if isinstance(value, (int, float)) else list(map(float, value))
        if pad.get('padding_mode', 'constant') != 'constant':
            raise ValueError(f'the runner pads with a constant, the test pipeline with {pad["padding_mode"]}')
        pad_spec = dict(value=value)
        if pad.get('pad_to_square', False):
            pad_spec.update(mode='square')
            input_size = (max(input_size), max(input_size))
        elif pad.get('size') is not None and pad.get('size_divisor') is None:
            pad_size = tuple(size if isinstance(size, (tuple, list)) else (size, size)) \
                if size is not None else (pad['size'][1], pad['size'][0])
            pad_spec.update(mode='size', size=list(map(int, pad_size)))
            input_size = tuple(max(a, b) for a, b in zip(input_size, pad_size))
        else:
            pad_spec.update(mode='none')
        if pad.get('size_divisor') is not None:
            pad_spec.update(divisor=int(pad['size_divisor']))
            input_size = tuple(-(-s // pad['size_divisor']) * pad['size_divisor'] for s in input_size)
    input_size = tuple(-(-int(s) // divisor) * divisor for s in input_size)
    rgb = preprocessor.get('bgr_to_rgb', preprocessor.get('to_rgb', False))
    spec = dict(task='detection' if cfg.default_scope == 'mmdet' else 'segmentation',
                input_size=list(map(int, input_size)),
                resize='keep_ratio' if keep_ratio else 'exact',
                resize_size=list(map(int, resize_size)),
                mean=list(map(float, preprocessor.get('mean') or [0, 0, 0])),
                std=list(map(float, preprocessor.get('std') or [1, 1, 1])),
                channel_order='rgb' if rgb else 'bgr',
                pad_value=float(preprocessor.get('pad_value', preprocessor.get('pad_val', 0))),
                **dataset_metainfo(cfg))
    if pad_spec is not None:
        spec['pad'] = pad_spec
    if spec['task'] == 'detection':
        spec['clip_boxes'] = bool(clip_boxes)
    return spec


def write_metadata(path: str, spec: dict) -> None:
    import onnx
    model = onnx.load(path)
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(spec)})
    onnx.save(model, path)


def export_end2end(config: str, checkpoint: Optional[str], out: str, size=None, opset: int = 17):
    """An end-to-end ONNX model (see :mod:`ghost_backbones.apps.end2end`) with its preprocessing
    in the metadata; returns the PyTorch module it was traced from, and the spec."""
    from mmengine.config import Config

    from .end2end import end2end
    cfg = Config.fromfile(config)
    module = end2end(deploy_backbone(build_from_config(config, checkpoint))).eval()
    spec = preprocessing_spec(cfg, size, getattr(module, 'clips_boxes', True))
    names = ['boxes', 'scores', 'labels'] if spec['task'] == 'detection' else ['labels']
    export_onnx(module, torch.zeros(1, 3, *spec['input_size']), out, names, opset)
    write_metadata(out, spec)
    return module, spec
