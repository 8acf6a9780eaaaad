"""GhostNet v1 / v2 / v3 as an OpenMMLab backbone.

Papers: GhostNet (CVPR 2020, arXiv:1911.11907), GhostNetV2 (NeurIPS 2022, arXiv:2211.12905),
GhostNetV3 (arXiv:2404.11202). The layout (``conv_stem``, ``bn1``, ``blocks.i.j``) and the
arithmetic are those of timm's ``ghostnet.py`` and the official releases, so their ImageNet
weights load as they are; the conventions (``out_indices``, ``frozen_stages``, ``norm_eval``,
``norm_cfg``, ``act_cfg``, ``with_cp``, ``init_cfg``) are those of mmdet's MobileNetV2.
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import MODELS
from .blocks import GhostBottleneck, RepGhostBottleneck
from .layers import ConvNormAct, SqueezeExcite, build_act, build_norm, conv2d, fuse_conv_norm, make_divisible

# One row per stage ``blocks[i]``: [kernel, expansion, out channels, SE ratio, stride] per block.
# Stage 9, the 1x1 conv to ``last_channels``, is added after these.
ARCH_SETTINGS = [
    [[3, 16, 16, 0, 1]],                                     # 0  stride 2
    [[3, 48, 24, 0, 2]],                                     # 1  stride 4
    [[3, 72, 24, 0, 1]],                                     # 2  stride 4   (out, 24 ch)
    [[5, 72, 40, 0.25, 2]],                                  # 3  stride 8
    [[5, 120, 40, 0.25, 1]],                                 # 4  stride 8   (out, 40 ch)
    [[3, 240, 80, 0, 2]],                                    # 5  stride 16
    [[3, 200, 80, 0, 1], [3, 184, 80, 0, 1], [3, 184, 80, 0, 1],
     [3, 480, 112, 0.25, 1], [3, 672, 112, 0.25, 1]],        # 6  stride 16  (out, 112 ch)
    [[5, 672, 160, 0.25, 2]],                                # 7  stride 32
    [[5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1],
     [5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1]],           # 8  stride 32
]
LAST_CHANNELS = 960                                          # 9  stride 32  (out, 960 ch)
NUM_STAGES = len(ARCH_SETTINGS) + 1
ARCHS = ('v1', 'v2', 'v3')
# Stages whose stride 2 becomes dilation for out_stride 16 / 8 (the stride-32 and stride-16 steps).
DILATED_STAGES = {32: (), 16: (7,), 8: (5, 7)}


class BlockPlan(NamedTuple):
    """How one block runs: its stride, the dilation of the layers that read its input
    (``first_dilation``) and of those after the stride (``dilation``)."""
    stride: int
    first_dilation: int
    dilation: int


def dilation_plan(out_stride: int) -> List[List[BlockPlan]]:
    """Per stage, per block: the atrous rule (see :mod:`.blocks`). A stride of 2 in a dilated
    stage becomes 1, its block reads the input at the previous rate and every later layer runs
    at twice that rate."""
    plan, dilation = [], 1
    for stage_index, stage_cfg in enumerate(ARCH_SETTINGS):
        stage = []
        for *_, stride in stage_cfg:
            if stride > 1 and stage_index in DILATED_STAGES[out_stride]:
                stage.append(BlockPlan(1, dilation, dilation * stride))
                dilation *= stride
            else:
                stage.append(BlockPlan(stride, dilation, dilation))
        plan.append(stage)
    return plan


def check_arguments(arch, widen_factor, out_indices, frozen_stages, out_stride, num_branches) -> Tuple[int, ...]:
    """ValueErrors that name the bad value; returns ``out_indices`` as a tuple."""
    if arch not in ARCHS:
        raise ValueError(f'arch must be one of {ARCHS}, got {arch!r}')
    if isinstance(widen_factor, bool) or not isinstance(widen_factor, (int, float)) or widen_factor <= 0:
        raise ValueError(f'widen_factor must be a positive number, got {widen_factor!r}')
    out_indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
    if len(out_indices) == 0:
        raise ValueError('out_indices must name at least one stage (0..9), got ()')
    for index in out_indices:
        if index not in range(NUM_STAGES):
            raise ValueError(f'out_indices must be in range(0, {NUM_STAGES}), got {index!r} in {out_indices}')
    if frozen_stages not in range(-1, NUM_STAGES + 1):
        raise ValueError(f'frozen_stages must be in range(-1, {NUM_STAGES + 1}), got {frozen_stages!r}')
    if out_stride not in DILATED_STAGES:
        raise ValueError(f'out_stride must be one of {tuple(sorted(DILATED_STAGES))}, got {out_stride!r}')
    if num_branches < 1:
        raise ValueError(f'num_branches must be >= 1, got {num_branches!r}')
    return out_indices


@MODELS.register_module()
class GhostNet(BaseModule):
    """GhostNet backbone (v1, v2 with DFC attention, v3 with re-parameterisable branches).

    Args:
        arch (str): 'v1', 'v2' or 'v3'.
        widen_factor (float): channel multiplier (0.5, 1.0, 1.3, 1.6 in practice); channels are
            rounded to multiples of 4 as in the reference.
        out_indices (Sequence[int]): stages ``blocks[i]``, 0..9, whose outputs are returned.
            Default (2, 4, 6, 9): the last block of each resolution, strides 4/8/16/32,
            channels (24, 40, 112, 960) at 1.0x.
        out_stride (int): 32, or 16 / 8 to replace the last strides by dilation (segmentation),
            following the atrous rule (the dilated network computes the strided one's outputs
            on every other pixel).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 0..k-1.
        norm_cfg (dict): norm layers (BN, SyncBN, GN, ...).
        act_cfg (dict): activation (ReLU in the papers; squeeze-excite keeps ReLU as the reference).
        norm_eval (bool): keep norm layers in eval mode during training (frozen statistics).
        with_cp (bool): gradient checkpointing per stage: less memory, slower.
        num_branches (int): v3 only, conv branches per re-parameterisable conv.
        in_channels (int): input image channels.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained', checkpoint=PATH)``
            (alone or in a list) loads timm / official ImageNet weights (classifier keys skipped,
            any other mismatch is an error naming the keys).
    """

    def __init__(self,
                 arch: str = 'v1',
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (2, 4, 6, 9),
                 out_stride: int = 32,
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 num_branches: int = 3,
                 in_channels: int = 3,
                 init_cfg=None):
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d'),
                        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
        super().__init__(init_cfg)
        self.out_indices = check_arguments(arch, widen_factor, out_indices, frozen_stages, out_stride, num_branches)
        self.arch = arch
        self.widen_factor = widen_factor
        self.out_stride = out_stride
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deployed = False
        stem_channels = make_divisible(16 * widen_factor, 4)
        self._make_stem_layer(in_channels, stem_channels, norm_cfg, act_cfg)
        self.blocks = self._make_stages(stem_channels, norm_cfg, act_cfg, num_branches)
        self._freeze_stages()

    def _make_stem_layer(self, in_channels: int, stem_channels: int, norm_cfg: dict, act_cfg: dict) -> None:
        self.conv_stem = conv2d(in_channels, stem_channels, 3, stride=2)
        self.bn1 = build_norm(norm_cfg, stem_channels)
        self.act1 = build_act(act_cfg)

    def _make_stages(self, in_channels: int, norm_cfg: dict, act_cfg: dict, num_branches: int) -> nn.Sequential:
        """``blocks[0..8]`` from the arch table, ``blocks[9]`` the 1x1 conv to 960·w channels;
        records each stage's channels and stride."""
        block_type = RepGhostBottleneck if self.arch == 'v3' else GhostBottleneck
        extra = dict(num_branches=num_branches) if self.arch == 'v3' else {}
        stages: List[nn.Module] = []
        self.stage_channels: List[int] = []
        self.stage_strides: List[int] = []
        stride_so_far, block_index = 2, 0
        for stage_cfg, stage_plan in zip(ARCH_SETTINGS, dilation_plan(self.out_stride)):
            layers = []
            for (kernel, expansion, channels, se_ratio, stride), plan in zip(stage_cfg, stage_plan):
                out_channels = make_divisible(channels * self.widen_factor, 4)
                layers.append(block_type(
                    in_channels, make_divisible(expansion * self.widen_factor, 4), out_channels, kernel,
                    stride=plan.stride, dilation=plan.dilation, first_dilation=plan.first_dilation,
                    downsample=stride > 1, se_ratio=se_ratio,
                    # v2 / v3 put DFC attention in every block's expansion but the first two
                    attention=self.arch != 'v1' and block_index > 1, norm_cfg=norm_cfg, act_cfg=act_cfg, **extra))
                in_channels = out_channels
                stride_so_far *= plan.stride
                block_index += 1
            stages.append(nn.Sequential(*layers))
            self.stage_channels.append(in_channels)
            self.stage_strides.append(stride_so_far)
        last_channels = make_divisible(LAST_CHANNELS * self.widen_factor, 4)
        stages.append(nn.Sequential(ConvNormAct(in_channels, last_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)))
        self.stage_channels.append(last_channels)
        self.stage_strides.append(stride_so_far)
        return nn.Sequential(*stages)

    @property
    def out_channels(self) -> List[int]:
        """Channels of the returned feature maps, in ``out_indices`` order (for necks/heads)."""
        return [self.stage_channels[i] for i in self.out_indices]

    @property
    def out_strides(self) -> List[int]:
        """Strides of the returned feature maps with respect to the input."""
        return [self.stage_strides[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        features = {}
        for i, stage in enumerate(self.blocks[:max(self.out_indices) + 1]):
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            if i in self.out_indices:
                features[i] = x
        return tuple(features[i] for i in self.out_indices)

    def _freeze_stages(self) -> None:
        frozen = []
        if self.frozen_stages >= 0:
            frozen += [self.conv_stem, self.bn1]
        frozen += list(self.blocks[:max(self.frozen_stages, 0)])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        """Training mode, keeping frozen stages and (with ``norm_eval``) all norms in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """A ``Pretrained`` entry of ``init_cfg`` (a dict, or one entry of a list, applied after
        the others as mmengine does) loads strictly (see :mod:`ghost_backbones.weights`); its
        ``checkpoint`` is a path, a ``.safetensors`` file, a hub name (``timm/ghostnet_100.in1k``,
        :mod:`ghost_backbones.hub_weights`) or a URL."""
        configs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in configs if c.get('type') == 'Pretrained']
        if len(pretrained) > 1:
            raise ValueError(f'init_cfg has {len(pretrained)} Pretrained entries; give one')
        if not pretrained:
            super().init_weights()
            return
        others = [c for c in configs if c.get('type') != 'Pretrained']
        if others:
            original, self.init_cfg = self.init_cfg, others
            try:
                super().init_weights()
            finally:
                self.init_cfg = original
        from ..weights import load_pretrained
        load_pretrained(self, pretrained[0]['checkpoint'], prefix=pretrained[0].get('prefix'),
                        map_location=pretrained[0].get('map_location', 'cpu'))
        self._is_init = True

    @torch.no_grad()
    def switch_to_deploy(self) -> 'GhostNet':
        """Fold every BatchNorm into its conv and re-parameterise v3 branches, in place.

        The outputs stay those of the training-time structure in eval mode; the state-dict
        layout changes (deploy checkpoints are not timm checkpoints). Returns ``self``.
        """
        if self.deployed:
            return self
        self.eval()
        self.conv_stem = fuse_conv_norm(self.conv_stem, self.bn1)
        self.bn1 = nn.Identity()
        for stage in self.blocks[:-1]:
            for block in stage:
                block.switch_to_deploy()
        last = self.blocks[-1][0]
        self.blocks[-1][0] = nn.Sequential(fuse_conv_norm(last.conv, last.bn1), last.act)
        for module in self.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = True  # every ReLU now follows a conv: its input is a fresh tensor
            elif isinstance(module, SqueezeExcite):
                module.switch_to_deploy()
        self.deployed = True
        return self
