"""What several test modules share: paths, configs pointed at test data, BN randomisation,
timm names. (conftest.py holds the fixtures.)"""
import os.path as osp

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')
DET_CONFIG = osp.join(CONFIGS, 'synthetic', 'ssdlite_ghostnet-1.0x_synthetic-160.py')
SEG_CONFIG = osp.join(CONFIGS, 'synthetic', 'fpn_ghostnet-1.0x_synthetic-160.py')
TIMM_PREFIX = {'v1': 'ghostnet', 'v2': 'ghostnetv2', 'v3': 'ghostnetv3'}


def tool(*parts: str) -> str:
    """The path of a script under tools/, e.g. tool('analysis', 'benchmark.py')."""
    return osp.join(ROOT, 'tools', *parts)


def timm_name(arch: str, width: float = 1.0) -> str:
    """timm's model name: ghostnet_100, ghostnetv2_130, ..."""
    return f'{TIMM_PREFIX[arch]}_{int(round(width * 100)):03d}'


def timm_model(arch: str, width: float) -> nn.Module:
    """timm's GhostNet with its own arch table (widths timm has no name for included)."""
    from timm.models import ghostnet as timm_ghostnet
    return timm_ghostnet._create_ghostnet(timm_name(arch, width), width=width, version=arch)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so that a wrong BN or branch cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith('weight') and tensor.dim() == 1:
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


def calibrate_bn(model: nn.Module, size: int = 80, seed: int = 3, batches: int = 2) -> nn.Module:
    """Random weights, running statistics measured on data (as after training), so that
    activations stay O(1) through the depth and an absolute tolerance means something."""
    randomize(model, seed=seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for batch in range(batches):
            model(torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(batch)))
    return model.eval()


def data_options(scope: str, data_root: str) -> list:
    """``--cfg-options`` pointing a synthetic config at another copy of the data."""
    from ghost_backbones.apps.main_job import data_options as options
    return options(scope, data_root)


def run_tool(script: str, args, log_file: str, env=None) -> str:
    """A script under tools/ (or any path) in a subprocess; its output, or an error with its tail."""
    import sys
    from ghost_backbones.apps.main_job import run_command
    path = script if osp.isabs(script) else tool(script)
    return run_command([sys.executable, path, *args], log_file, env)


def det_cfg(data_root: str, *extra):
    from ghost_backbones.apps.runtime import load_config, parse_cfg_options
    return load_config(DET_CONFIG, cfg_options=parse_cfg_options(data_options('mmdet', data_root) + list(extra)))


def seg_cfg(data_root: str, *extra):
    from ghost_backbones.apps.runtime import load_config, parse_cfg_options
    return load_config(SEG_CONFIG, cfg_options=parse_cfg_options(data_options('mmseg', data_root) + list(extra)))
