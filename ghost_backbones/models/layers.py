"""Building blocks of the GhostNet family.

Module and attribute names follow timm's ``timm/models/ghostnet.py`` (and so the official
releases), so that ImageNet checkpoints load into these modules key for key.

* :class:`GhostModule` (v1): a primary conv makes ``ceil(out / ratio)`` channels, a cheap
  depthwise conv makes the rest from the primary output; both are concatenated and cut to
  ``out`` channels.
* The same module with ``attention=True`` (v2) multiplies its output by the DFC attention map:
  a horizontal and a vertical depthwise "fully connected" conv on a 2x down-sampled input.
* :class:`RepGhostModule` (v3) trains primary and cheap convs as sums of several conv-BN
  branches (plus a 1x1 and an identity branch) that :meth:`switch_to_deploy` folds into one
  conv each.

Every conv/norm pair folds into one conv in deploy mode (:func:`fuse_conv_norm`).
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .builders import build_act, build_norm

IntPair = Union[int, Tuple[int, int]]


def make_divisible(value: float, divisor: int = 4, min_value: Optional[int] = None,
                   round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor`` exactly as timm does."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def same_padding(kernel_size: IntPair, dilation: IntPair) -> Tuple[int, int]:
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def conv2d(in_channels: int, out_channels: int, kernel_size: IntPair, stride: int = 1,
           dilation: IntPair = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv with 'same' padding for odd kernels (a norm always follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                     same_padding(kernel_size, dilation), dilation, groups, bias=False)


def fuse_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """One conv (with bias) equal to ``norm(conv(x))`` for a BatchNorm in inference mode."""
    if not isinstance(norm, _BatchNorm):
        raise ValueError(f'deploy mode folds BatchNorm layers only, got {type(norm).__name__}; '
                         'use norm_cfg=dict(type="BN") (or SyncBN) for a deployable model')
    kernel, bias = conv_norm_kernel_bias(conv.weight, norm)
    if conv.bias is not None:
        bias = bias + conv.bias * norm.weight / (norm.running_var + norm.eps).sqrt()
    return conv_from(conv, kernel, bias)


def conv_norm_kernel_bias(kernel: torch.Tensor, norm: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of a bias-free conv followed by a BatchNorm, folded."""
    std = (norm.running_var + norm.eps).sqrt()
    scale = norm.weight / std
    return kernel * scale.reshape(-1, 1, 1, 1), norm.bias - norm.running_mean * scale


def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold every (conv, norm) pair of a Sequential; the rest (activations) stays in place."""
    layers: List[nn.Module] = []
    for layer in seq:
        if isinstance(layer, (_BatchNorm, nn.GroupNorm)) and layers and isinstance(layers[-1], nn.Conv2d):
            layers[-1] = fuse_conv_norm(layers[-1], layer)
        elif not isinstance(layer, nn.Identity):
            layers.append(layer)
    return nn.Sequential(*layers)


class HardSigmoid(nn.Module):
    """relu6(x + 3) / 6, the gate of GhostNet's squeeze-excite (timm's ``hard_sigmoid``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.) / 6.


class ConvNormAct(nn.Module):
    """Conv -> norm -> activation with timm's ``ConvBnAct`` key names (``conv``, ``bn1``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 dilation: int = 1, groups: int = 1, norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.bn1 = build_norm(norm_cfg, out_channels)
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv(x)))

    def kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(self.bn1, _BatchNorm):
            raise ValueError('re-parameterisation folds BatchNorm layers only, '
                             f'got {type(self.bn1).__name__}')
        return conv_norm_kernel_bias(self.conv.weight, self.bn1)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite as in GhostNet (timm and the official code, timm key names): ReLU in
    the hidden layer whatever the backbone's ``act_cfg``, hard-sigmoid gate."""

    def __init__(self, channels: int, ratio: float = 0.25):
        super().__init__()
        reduced = make_divisible(channels * ratio, 4)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = HardSigmoid()
        self.deployed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployed:
            # On a 1x1 map the two convs are matrix products: skipping conv dispatch is faster
            # on CPU (and rounds differently, hence training keeps timm's exact conv form).
            hidden = self.act1(F.linear(x.mean((2, 3)), self.conv_reduce.weight.flatten(1), self.conv_reduce.bias))
            scale = F.linear(hidden, self.conv_expand.weight.flatten(1), self.conv_expand.bias)[:, :, None, None]
        else:
            scale = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(scale)

    def switch_to_deploy(self) -> None:
        self.deployed = True


def dfc_attention(in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int,
                  norm_cfg: dict) -> nn.Sequential:
    """GhostNetV2's decoupled fully-connected attention branch (before its sigmoid).

    A pointwise conv, then a 1x5 and a 5x1 depthwise conv: long-range mixing along rows and
    columns at low cost, on a 2x average-pooled input (see :func:`apply_dfc_attention`). The
    branch is the same at every ``dilation``: a dilated module runs it on the sub-grid it reads
    (GhostNet's modules give it a 1x1, stride-1 first conv, for which that is exact).
    """
    return nn.Sequential(
        conv2d(in_channels, out_channels, kernel_size, stride),
        build_norm(norm_cfg, out_channels),
        conv2d(out_channels, out_channels, (1, 5), groups=out_channels),
        build_norm(norm_cfg, out_channels),
        conv2d(out_channels, out_channels, (5, 1), groups=out_channels),
        build_norm(norm_cfg, out_channels),
    )


def apply_dfc_attention(out: torch.Tensor, short_conv: nn.Module, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """Multiply ``out`` by the DFC attention map computed from the module input ``x``.

    Rate 1: 2x2 average pool, the branch, sigmoid, nearest upsampling (timm's computation).
    Rate r > 1 (a dilated stage) follows the atrous rule, computing on every r-th pixel what the
    strided network computes. The values it pools are those of the sub-grid ``x[..., ::r, ::r]``
    (phase 0: the strided network's pixels are the dilated one's ``[::r, ::r]``), so the branch
    runs there exactly as at rate 1, and each attention value is held over a 2r x 2r block, as
    nearest upsampling holds it over 2x2. A sub-grid of odd size pairs its last row / column
    with zeros, and the holding is cut to ``out``'s size. This equals the branch run at full
    resolution with its convs at rate 2r, keeping one value in (2r)^2 (the earlier form, kept as
    a reference in the tests), for 1/(2r)^2 of the work.
    """
    if dilation == 1:
        attention = torch.sigmoid(short_conv(F.avg_pool2d(x, kernel_size=2, stride=2)))
        return out * F.interpolate(attention, size=out.shape[-2:], mode='nearest')
    r = dilation
    grid = x[..., ::r, ::r]
    odd_h, odd_w = grid.shape[-2] % 2, grid.shape[-1] % 2
    if odd_h or odd_w:
        grid = F.pad(grid, (0, odd_w, 0, odd_h))
    attention = torch.sigmoid(short_conv(F.avg_pool2d(grid, kernel_size=2, stride=2)))
    held = F.interpolate(attention, scale_factor=2 * r, mode='nearest')
    return out * held[..., :out.shape[-2], :out.shape[-1]]


class GhostModule(nn.Module):
    """Ghost module (v1), with the DFC attention of v2 when ``attention=True``.

    Args:
        in_channels / out_channels: channels in and out.
        kernel_size: kernel of the primary conv (1 in GhostNet's bottlenecks).
        ratio: ``out / primary`` channels; the cheap op makes the other ``(ratio - 1)`` parts.
        dw_size: kernel of the cheap depthwise conv.
        stride: stride of the primary conv.
        dilation: rate of the cheap depthwise conv and of the attention, for dilated stages.
        use_act: activation after both convs (False for the linear projection ``ghost2``).
        attention: add GhostNetV2's DFC attention branch (``short_conv``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, ratio: int = 2,
                 dw_size: int = 3, stride: int = 1, dilation: int = 1, use_act: bool = True,
                 attention: bool = False, norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        self.out_channels = out_channels
        init_channels = math.ceil(out_channels / ratio)
        new_channels = init_channels * (ratio - 1)
        self.trim = init_channels + new_channels != out_channels
        act = act_cfg if use_act else None
        self.primary_conv = nn.Sequential(
            conv2d(in_channels, init_channels, kernel_size, stride),
            build_norm(norm_cfg, init_channels),
            build_act(act),
        )
        self.cheap_operation = nn.Sequential(
            conv2d(init_channels, new_channels, dw_size, dilation=dilation, groups=init_channels),
            build_norm(norm_cfg, new_channels),
            build_act(act),
        )
        self.attention = attention
        self.dilation = dilation
        if attention:
            self.short_conv = dfc_attention(in_channels, out_channels, kernel_size, stride, dilation, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        if self.trim:  # (a slice that keeps everything is free in PyTorch, a copy in ONNX)
            out = out[:, :self.out_channels]
        if self.attention:
            out = apply_dfc_attention(out, self.short_conv, x, self.dilation)
        return out

    def switch_to_deploy(self) -> None:
        """Fold every BatchNorm into the conv before it."""
        self.primary_conv = fold_sequential(self.primary_conv)
        self.cheap_operation = fold_sequential(self.cheap_operation)
        if self.attention:
            self.short_conv = fold_sequential(self.short_conv)


class RepGhostModule(nn.Module):
    """GhostNetV3's Ghost module: re-parameterisable primary and cheap convs.

    At training time the primary conv is the sum of ``num_branches`` conv-BN branches and the
    cheap depthwise conv is the sum of ``num_branches`` depthwise conv-BN branches, a 1x1
    depthwise conv-BN (``cheap_rpr_scale``) and a BN on its input (``cheap_rpr_skip``);
    :meth:`switch_to_deploy` folds each sum into one conv. ``attention=True`` adds the DFC
    attention branch (timm's ``mode='shortcut'``), which then also cuts the output to width.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, ratio: int = 2,
                 dw_size: int = 3, stride: int = 1, dilation: int = 1, use_act: bool = True,
                 attention: bool = False, num_branches: int = 3, norm_cfg: dict = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        if ratio != 2:
            raise ValueError(f'RepGhostModule needs ratio=2 for its identity branch, got ratio={ratio}')
        self.out_channels = out_channels
        init_channels = math.ceil(out_channels / ratio)
        new_channels = init_channels * (ratio - 1)
        self.trim = init_channels + new_channels != out_channels
        act = act_cfg if use_act else None
        self.deployed = False
        self.primary_rpr_conv = nn.ModuleList([
            ConvNormAct(in_channels, init_channels, kernel_size, stride, norm_cfg=norm_cfg, act_cfg=None)
            for _ in range(num_branches)])
        self.primary_activation = build_act(act)
        self.cheap_rpr_skip = build_norm(norm_cfg, init_channels)
        self.cheap_rpr_conv = nn.ModuleList([
            ConvNormAct(init_channels, new_channels, dw_size, dilation=dilation, groups=init_channels,
                        norm_cfg=norm_cfg, act_cfg=None)
            for _ in range(num_branches)])
        self.cheap_rpr_scale = ConvNormAct(init_channels, new_channels, 1, groups=init_channels,
                                           norm_cfg=norm_cfg, act_cfg=None)
        self.cheap_activation = build_act(act)
        self.attention = attention
        self.dilation = dilation
        if attention:
            self.short_conv = dfc_attention(in_channels, out_channels, kernel_size, stride, dilation, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployed:
            x1 = self.primary_conv(x)
            x2 = self.cheap_operation(x1)
        else:
            x1 = sum(branch(x) for branch in self.primary_rpr_conv)
            x1 = self.primary_activation(x1)
            x2 = self.cheap_rpr_scale(x1) + self.cheap_rpr_skip(x1)
            for branch in self.cheap_rpr_conv:
                x2 = x2 + branch(x1)
            x2 = self.cheap_activation(x2)
        out = torch.cat([x1, x2], dim=1)
        if self.attention:
            out = apply_dfc_attention(out[:, :self.out_channels] if self.trim else out, self.short_conv, x,
                                      self.dilation)
        return out

    def switch_to_deploy(self) -> None:
        """Replace the branches by one conv each (plus activation), fold the attention's BNs."""
        if self.deployed:
            return
        primary = self.primary_rpr_conv[0].conv
        kernel, bias = sum_kernel_bias(self.primary_rpr_conv)
        self.primary_conv = nn.Sequential(conv_from(primary, kernel, bias), self.primary_activation)

        cheap = self.cheap_rpr_conv[0].conv
        kernel, bias = sum_kernel_bias(self.cheap_rpr_conv)
        scale_kernel, scale_bias = self.cheap_rpr_scale.kernel_bias()
        kernel = kernel + pad_to_kernel(scale_kernel, cheap.kernel_size)
        skip_kernel, skip_bias = conv_norm_kernel_bias(
            identity_kernel(cheap.in_channels, cheap.groups, cheap.kernel_size, cheap.weight), self.cheap_rpr_skip)
        self.cheap_operation = nn.Sequential(
            conv_from(cheap, kernel + skip_kernel, bias + scale_bias + skip_bias), self.cheap_activation)
        if self.attention:
            self.short_conv = fold_sequential(self.short_conv)
        for name in ('primary_rpr_conv', 'primary_activation', 'cheap_rpr_skip', 'cheap_rpr_conv',
                     'cheap_rpr_scale', 'cheap_activation'):
            delattr(self, name)
        self.deployed = True


def sum_kernel_bias(branches: Sequence[ConvNormAct]) -> Tuple[torch.Tensor, torch.Tensor]:
    kernels, biases = zip(*(branch.kernel_bias() for branch in branches))
    return sum(kernels), sum(biases)


def pad_to_kernel(kernel_1x1: torch.Tensor, kernel_size: Tuple[int, int]) -> torch.Tensor:
    """Place a 1x1 kernel at the centre of a ``kernel_size`` kernel (valid for any dilation)."""
    pad_h, pad_w = kernel_size[0] // 2, kernel_size[1] // 2
    return F.pad(kernel_1x1, [pad_w, pad_w, pad_h, pad_h])


def identity_kernel(channels: int, groups: int, kernel_size: Tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """The kernel of a (grouped) conv that returns its input."""
    per_group = channels // groups
    kernel = torch.zeros((channels, per_group) + tuple(kernel_size), dtype=like.dtype, device=like.device)
    for i in range(channels):
        kernel[i, i % per_group, kernel_size[0] // 2, kernel_size[1] // 2] = 1
    return kernel


def conv_from(template: nn.Conv2d, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A conv shaped like ``template`` (stride, padding, dilation, groups) with the given weights."""
    conv = nn.Conv2d(template.in_channels, template.out_channels, template.kernel_size, template.stride,
                     template.padding, template.dilation, template.groups, bias=True,
                     device=kernel.device, dtype=kernel.dtype)
    conv.weight.data.copy_(kernel.detach())
    conv.bias.data.copy_(bias.detach())
    return conv
