"""Norm and activation layers from OpenMMLab config dicts (``dict(type='BN', ...)``).

With mmcv installed (any flavour), its builders are used, so every norm and activation an
OpenMMLab project registers works. Without mmcv (plain PyTorch, timm-style use), a table of
the common ones does: the backbone needs torch and mmengine only.
"""
from typing import Optional

import torch.nn as nn

try:
    from mmcv.cnn import build_activation_layer, build_norm_layer
except ImportError:  # no mmcv: the table below
    build_activation_layer = build_norm_layer = None

NORMS = {'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm, 'GN': nn.GroupNorm,
         'IN': nn.InstanceNorm2d}
ACTIVATIONS = {'ReLU': nn.ReLU, 'ReLU6': nn.ReLU6, 'LeakyReLU': nn.LeakyReLU, 'PReLU': nn.PReLU, 'ELU': nn.ELU,
               'Sigmoid': nn.Sigmoid, 'Tanh': nn.Tanh, 'HSwish': nn.Hardswish, 'HSigmoid': nn.Hardsigmoid,
               'SiLU': nn.SiLU, 'Swish': nn.SiLU, 'GELU': nn.GELU}


def build_norm(norm_cfg: dict, channels: int) -> nn.Module:
    if build_norm_layer is not None:
        return build_norm_layer(norm_cfg, channels)[1]
    cfg = dict(norm_cfg)
    kind, requires_grad = cfg.pop('type'), cfg.pop('requires_grad', True)
    if kind not in NORMS:
        raise KeyError(f'norm type {kind!r} needs mmcv (without it: {sorted(NORMS)})')
    layer = NORMS[kind](num_channels=channels, **cfg) if kind == 'GN' else NORMS[kind](channels, **cfg)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer


def build_act(act_cfg: Optional[dict]) -> nn.Module:
    """An activation from ``act_cfg``, or Identity for ``None`` (a linear layer)."""
    if act_cfg is None:
        return nn.Identity()
    if build_activation_layer is not None:
        return build_activation_layer(act_cfg)
    cfg = dict(act_cfg)
    kind = cfg.pop('type')
    if kind not in ACTIVATIONS:
        raise KeyError(f'activation type {kind!r} needs mmcv (without it: {sorted(ACTIVATIONS)})')
    return ACTIVATIONS[kind](**cfg)
