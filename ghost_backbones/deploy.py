"""Deployment: the backbone in deploy mode, whole detectors / segmenters, to ONNX, checked
against PyTorch with onnxruntime.

Exports use torch's TorchScript-based ONNX exporter (``dynamo=False``: the dynamo exporter
needs onnxscript) with a dynamic batch axis.
"""
import os
import os.path as osp
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .models import GhostNet


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


def build_from_config(config: str, checkpoint: str = None) -> nn.Module:
    """A detector / segmenter from a config (and optionally its trained weights), on CPU; without
    a checkpoint the weights are PyTorch's default initialisation (enough for shapes, export, FLOPs)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.runner import load_checkpoint

    from .runtime import replace_sync_bn
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    replace_sync_bn(cfg.model)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    return model.eval()


def wrap_for_export(model: nn.Module) -> nn.Module:
    if isinstance(model, GhostNet):
        return model
    if hasattr(model, 'bbox_head'):
        return DetectorRawOutputs(model)
    if hasattr(model, 'decode_head'):
        return SegmentorLogits(model)
    raise ValueError(f'cannot export {type(model).__name__}: not a GhostNet, detector or segmenter')
