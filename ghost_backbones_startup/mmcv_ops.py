"""The functions of mmcv 2.1.0's compiled ``mmcv._ext`` that OpenMMLab detectors call, on torch
and torchvision (CPU and CUDA), with mmcv's calling conventions (outputs written in place where
mmcv's kernels write them).

Implemented, with the models that reach them:

* ``nms`` (every detector's ``batched_nms``; ``offset=1`` is the legacy +1 box size),
* ``softnms`` (``nms=dict(type='soft_nms')``), mmcv's CPU algorithm,
* ``sigmoid_focal_loss_forward`` / ``_backward`` (mmdet's ``FocalLoss`` on CUDA: RetinaNet, ...),
* ``roi_align_forward`` / ``_backward`` in ``avg`` mode (two-stage detectors' RoI extractors),
* ``get_compiler_version`` / ``get_compiling_cuda_version`` (environment reports).

Every other name of ``mmcv._ext`` exists (mmcv's wrappers check that at import) and raises
:class:`NotImplementedError` naming the op and how to get mmcv's compiled build.
"""
from typing import Callable, Dict

import torch
import torchvision

COMPILED_BUILD_HINT = ('install mmcv 2.1.0 with its compiled ops instead of mmcv-lite: '
                       '`GB_MMCV=full bash tools/setup_env.sh` in a ghost_backbones checkout '
                       '(builds and caches the wheel; needs a C++ compiler, and nvcc for CUDA ops)')


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0) -> torch.Tensor:
    """Indices of the kept boxes, highest score first (mmcv's ``nms``)."""
    if boxes.numel() == 0:
        return boxes.new_zeros(0, dtype=torch.long)
    boxes = boxes.float() if boxes.device.type == 'cpu' and boxes.dtype == torch.half else boxes
    scores = scores.to(boxes.dtype)
    if offset:
        # mmcv's legacy convention: a box spans x1..x2 inclusive, one pixel wider and taller
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:4] + offset], dim=1)
    return torchvision.ops.nms(boxes, scores, float(iou_threshold))


SOFT_NMS_METHODS = {0: 'naive', 1: 'linear', 2: 'gaussian'}


def softnms(boxes: torch.Tensor, scores: torch.Tensor, dets: torch.Tensor, iou_threshold: float,
            sigma: float, min_score: float, method: int, offset: int) -> torch.Tensor:
    """mmcv's CPU soft-NMS: decays the scores of overlapping boxes, writes ``dets`` (x1, y1, x2,
    y2, score) in keep order and returns the kept indices."""
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f'softnms method must be one of {sorted(SOFT_NMS_METHODS)}, got {method}')
    boxes, scores = boxes.detach().cpu().double(), scores.detach().cpu().double()
    count = boxes.shape[0]
    data = torch.cat([boxes[:, :4], scores[:, None]], dim=1).clone()
    areas = (data[:, 2] - data[:, 0] + offset) * (data[:, 3] - data[:, 1] + offset)
    order = torch.arange(count)
    i = 0
    while i < count:
        best = i + int(torch.argmax(data[i:count, 4]))
        for array in (data, areas, order):  # bring the best remaining box to position i
            array[[i, best]] = array[[best, i]]
        rest = slice(i + 1, count)
        top_left = torch.maximum(data[rest, :2], data[i, :2])
        bottom_right = torch.minimum(data[rest, 2:4], data[i, 2:4])
        size = (bottom_right - top_left + offset).clamp(min=0)
        inter = size[:, 0] * size[:, 1]
        overlap = inter / (areas[i] + areas[rest] - inter)
        if method == 0:
            weight = torch.where(overlap >= iou_threshold, 0.0, 1.0)
        elif method == 1:
            weight = torch.where(overlap >= iou_threshold, 1 - overlap, 1.0)
        else:
            weight = torch.exp(-overlap * overlap / sigma)
        data[rest, 4] *= weight
        keep = torch.cat([torch.ones(i + 1, dtype=torch.bool), data[rest, 4] >= min_score])
        data, areas, order = data[:count][keep], areas[:count][keep], order[:count][keep]
        count = data.shape[0]
        i += 1
    dets[:count] = data.to(dets.dtype)
    return order


def _focal_terms(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
    """Sigmoid probabilities, the positive mask (target == class) and per-row class weights."""
    probability = torch.sigmoid(input)
    classes = torch.arange(input.shape[1], device=input.device)
    positive = target[:, None] == classes[None, :]
    if weight.numel() > 0:
        # mmcv weighs each row by weight[target]; background rows (target == C) keep weight 1
        row_weight = torch.where(target < input.shape[1], weight[target.clamp(max=input.shape[1] - 1)],
                                 torch.ones_like(target, dtype=input.dtype))[:, None]
    else:
        row_weight = None
    return probability, positive, row_weight


def sigmoid_focal_loss_forward(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                               output: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> None:
    """Per-element sigmoid focal loss into ``output`` (mmcv's kernel: logs clamped at FLT_MIN)."""
    p, positive, row_weight = _focal_terms(input, target, weight)
    tiny = torch.finfo(torch.float32).tiny
    loss_positive = -alpha * (1 - p).pow(gamma) * torch.log(p.clamp(min=tiny))
    loss_negative = -(1 - alpha) * p.pow(gamma) * torch.log((1 - p).clamp(min=tiny))
    loss = torch.where(positive, loss_positive, loss_negative)
    output.copy_(loss if row_weight is None else loss * row_weight)


def sigmoid_focal_loss_backward(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                                grad_input: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> None:
    """d loss / d input into ``grad_input`` (mmcv's closed form)."""
    p, positive, row_weight = _focal_terms(input, target, weight)
    tiny = torch.finfo(torch.float32).tiny
    grad_positive = -alpha * (1 - p).pow(gamma) * (1 - p - gamma * p * torch.log(p.clamp(min=tiny)))
    grad_negative = -(1 - alpha) * p.pow(gamma) * (gamma * (1 - p) * torch.log((1 - p).clamp(min=tiny)) - p)
    grad = torch.where(positive, grad_positive, grad_negative)
    grad_input.copy_(grad if row_weight is None else grad * row_weight)


def _check_avg_pool(pool_mode: int) -> None:
    if pool_mode != 1:
        raise NotImplementedError("mmcv op 'roi_align' with pool_mode='max' is not implemented on torchvision "
                                  f"(only 'avg', mmdet's default); {COMPILED_BUILD_HINT}")


def roi_align_forward(input: torch.Tensor, rois: torch.Tensor, output: torch.Tensor, argmax_y: torch.Tensor,
                      argmax_x: torch.Tensor, aligned_height: int, aligned_width: int, spatial_scale: float,
                      sampling_ratio: int, pool_mode: int, aligned: bool) -> None:
    """RoIAlign (rois: batch index, x1, y1, x2, y2) into ``output``: torchvision's kernel, which
    shares mmcv's sampling (adaptive when ``sampling_ratio`` <= 0, half-pixel offset if ``aligned``)."""
    _check_avg_pool(pool_mode)
    output.copy_(torchvision.ops.roi_align(input, rois.to(input.dtype), (aligned_height, aligned_width),
                                           spatial_scale, sampling_ratio, aligned))


def roi_align_backward(grad_output: torch.Tensor, rois: torch.Tensor, argmax_y: torch.Tensor,
                       argmax_x: torch.Tensor, grad_input: torch.Tensor, aligned_height: int, aligned_width: int,
                       spatial_scale: float, sampling_ratio: int, pool_mode: int, aligned: bool) -> None:
    _check_avg_pool(pool_mode)
    batch, channels, height, width = grad_input.shape
    grad_input.copy_(torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), spatial_scale, aligned_height, aligned_width, batch, channels,
        height, width, sampling_ratio, aligned))


def get_compiler_version() -> str:
    return f'none: mmcv-lite + ghost_backbones_startup (torch {torch.__version__}, ' \
           f'torchvision {torchvision.__version__})'


def get_compiling_cuda_version() -> str:
    return 'not compiled (torchvision kernels)'


IMPLEMENTED = (nms, softnms, sigmoid_focal_loss_forward, sigmoid_focal_loss_backward, roi_align_forward,
               roi_align_backward, get_compiler_version, get_compiling_cuda_version)


def exported_functions() -> Dict[str, Callable]:
    return {function.__name__: function for function in IMPLEMENTED}


def not_implemented(name: str) -> Callable:
    """What ``mmcv._ext.<name>`` is for every op not implemented here (module ``__getattr__``)."""
    if name.startswith('__'):
        raise AttributeError(name)

    def unavailable(*args, **kwargs):
        implemented = ', '.join(sorted(exported_functions()))
        raise NotImplementedError(f"mmcv op '{name}' needs mmcv's compiled ops, which mmcv-lite does not have "
                                  f'(ghost_backbones_startup implements {implemented}); {COMPILED_BUILD_HINT}')

    unavailable.__name__ = name
    return unavailable

