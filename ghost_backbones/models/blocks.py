"""Ghost bottlenecks: expand with a Ghost module, optional strided depthwise conv and SE,
project with a linear Ghost module, add the shortcut.

``downsample`` fixes the structure (whether ``conv_dw`` and a conv shortcut exist, as in the
arch table); ``stride`` and the dilations are what the layers run with, so a dilated stage keeps
the weights of the strided one (``out_stride`` 16 or 8 for segmentation). The atrous rule, as
mmseg's ResNet with ``contract_dilation``: when a stride of 2 becomes 1, the layers that read the
block's input (``ghost1``, the formerly strided ``conv_dw`` and shortcut) keep the input's rate,
``first_dilation``; the layers after them (``ghost2``) run at the new rate, ``dilation``. Then
the dilated network computes the strided one's outputs on every other pixel.
"""
from typing import Optional

import torch
import torch.nn as nn

from .layers import (ConvNormAct, GhostModule, RepGhostModule, SqueezeExcite, build_norm, conv2d,
                     conv_from, fold_sequential, fuse_conv_norm, pad_to_kernel, sum_kernel_bias)


def conv_shortcut(in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int,
                  norm_cfg: dict) -> nn.Sequential:
    """Depthwise kxk (strided) conv then pointwise conv: the shortcut when shape changes."""
    return nn.Sequential(
        conv2d(in_channels, in_channels, kernel_size, stride, dilation, groups=in_channels),
        build_norm(norm_cfg, in_channels),
        conv2d(in_channels, out_channels, 1),
        build_norm(norm_cfg, out_channels),
    )


class GhostBottleneck(nn.Module):
    """GhostNet v1 bottleneck; v2 when ``attention=True`` (DFC attention in the expansion).

    ``dilation``: the rate of the block's output resolution; ``first_dilation`` (default: the
    same) the rate of its input, for the layers that run before the (removed) stride.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dw_kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1, first_dilation: Optional[int] = None,
                 downsample: Optional[bool] = None, se_ratio: float = 0., attention: bool = False,
                 norm_cfg: dict = dict(type='BN'), act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        downsample = stride > 1 if downsample is None else downsample
        first_dilation = dilation if first_dilation is None else first_dilation
        self.ghost1 = GhostModule(in_channels, mid_channels, dilation=first_dilation, attention=attention,
                                  norm_cfg=norm_cfg, act_cfg=act_cfg)
        if downsample:
            self.conv_dw = conv2d(mid_channels, mid_channels, dw_kernel_size, stride, first_dilation,
                                  groups=mid_channels)
            self.bn_dw = build_norm(norm_cfg, mid_channels)
        else:
            self.conv_dw = None
            self.bn_dw = None
        self.se = SqueezeExcite(mid_channels, se_ratio) if se_ratio else nn.Identity()
        self.ghost2 = GhostModule(mid_channels, out_channels, dilation=dilation, use_act=False,
                                  norm_cfg=norm_cfg, act_cfg=act_cfg)
        if in_channels == out_channels and not downsample:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = conv_shortcut(in_channels, out_channels, dw_kernel_size, stride, first_dilation, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.conv_dw is not None:
            out = self.conv_dw(out)
            if self.bn_dw is not None:
                out = self.bn_dw(out)
        out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x)

    def switch_to_deploy(self) -> None:
        self.ghost1.switch_to_deploy()
        self.ghost2.switch_to_deploy()
        if self.conv_dw is not None and self.bn_dw is not None:
            self.conv_dw = fuse_conv_norm(self.conv_dw, self.bn_dw)
            self.bn_dw = None
        if isinstance(self.shortcut, nn.Sequential):
            self.shortcut = fold_sequential(self.shortcut)


class RepGhostBottleneck(nn.Module):
    """GhostNetV3 bottleneck: re-parameterisable Ghost modules and strided depthwise conv.

    The strided depthwise conv trains as ``num_branches`` depthwise conv-BN branches plus a
    1x1 depthwise conv-BN (``dw_rpr_scale``); deploy mode folds them into ``conv_dw``.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dw_kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1, first_dilation: Optional[int] = None,
                 downsample: Optional[bool] = None, se_ratio: float = 0., attention: bool = False,
                 num_branches: int = 3, norm_cfg: dict = dict(type='BN'), act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        self.downsample = stride > 1 if downsample is None else downsample
        first_dilation = dilation if first_dilation is None else first_dilation
        self.deployed = False
        self.ghost1 = RepGhostModule(in_channels, mid_channels, dilation=first_dilation, attention=attention,
                                     num_branches=num_branches, norm_cfg=norm_cfg, act_cfg=act_cfg)
        if self.downsample:
            self.dw_rpr_conv = nn.ModuleList([
                ConvNormAct(mid_channels, mid_channels, dw_kernel_size, stride, first_dilation, groups=mid_channels,
                            norm_cfg=norm_cfg, act_cfg=None) for _ in range(num_branches)])
            self.dw_rpr_scale = ConvNormAct(mid_channels, mid_channels, 1, stride, groups=mid_channels,
                                            norm_cfg=norm_cfg, act_cfg=None)
        self.se = SqueezeExcite(mid_channels, se_ratio) if se_ratio else nn.Identity()
        self.ghost2 = RepGhostModule(mid_channels, out_channels, dilation=dilation, use_act=False,
                                     num_branches=num_branches, norm_cfg=norm_cfg, act_cfg=act_cfg)
        if in_channels == out_channels and not self.downsample:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = conv_shortcut(in_channels, out_channels, dw_kernel_size, stride, first_dilation, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.downsample:
            if self.deployed:
                out = self.conv_dw(out)
            else:
                dw_out = self.dw_rpr_scale(out)
                for branch in self.dw_rpr_conv:
                    dw_out = dw_out + branch(out)
                out = dw_out
        out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x)

    def switch_to_deploy(self) -> None:
        if self.deployed:
            return
        self.ghost1.switch_to_deploy()
        self.ghost2.switch_to_deploy()
        if self.downsample:
            template = self.dw_rpr_conv[0].conv
            kernel, bias = sum_kernel_bias(self.dw_rpr_conv)
            scale_kernel, scale_bias = self.dw_rpr_scale.kernel_bias()
            kernel = kernel + pad_to_kernel(scale_kernel, template.kernel_size)
            self.conv_dw = conv_from(template, kernel, bias + scale_bias)
            del self.dw_rpr_conv, self.dw_rpr_scale
        if isinstance(self.shortcut, nn.Sequential):
            self.shortcut = fold_sequential(self.shortcut)
        self.deployed = True
