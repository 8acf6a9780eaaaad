"""Parameters and FLOPs of the backbone variants (mmengine.analysis), for the README table."""
from typing import Dict, List, Sequence

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count

from ..models import GhostNet


def count_gflops(model: torch.nn.Module, size) -> float:
    """mmengine's FLOP count (multiply-adds) of ``model`` on one image of ``size`` (an int for a
    square, or (height, width)), in G."""
    height, width = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.zeros(1, 3, height, width))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total() / 1e9


def model_info(arch: str, widen_factor: float, sizes: Sequence[int] = (224, 320),
               out_indices=(2, 4, 6, 9), out_stride: int = 32) -> Dict:
    """Params (M) and FLOPs (G, multiply-adds as mmengine counts them) per input size; at
    ``out_stride`` 16 / 8 the dilated backbone of segmentation (same params, more FLOPs)."""
    build = dict(arch=arch, widen_factor=widen_factor, out_indices=out_indices, out_stride=out_stride)
    model = GhostNet(**build).eval()
    info = dict(arch=arch, widen_factor=widen_factor, out_stride=out_stride,
                params_m=parameter_count(model)[''] / 1e6, out_channels=model.out_channels,
                out_strides=model.out_strides)
    deployed = GhostNet(**build).switch_to_deploy()
    info['deploy_params_m'] = parameter_count(deployed)[''] / 1e6
    for size in sizes:
        info[f'gflops_{size}'] = count_gflops(model, size)
    return info


def config_info(config: str, size) -> Dict:
    """Params (M) and FLOPs (G) of a whole detector / segmenter / classifier from its config, on
    one image of ``size`` (int or (height, width); up to the raw head outputs: box decoding and
    NMS are not counted)."""
    from .deploy import build_from_config, wrap_for_export
    model = wrap_for_export(build_from_config(config))
    return dict(config=config, size=size, params_m=parameter_count(model)[''] / 1e6,
                gflops=count_gflops(model, size))


def markdown_table(rows: List[Dict], sizes: Sequence[int]) -> str:
    header = ['arch', 'width', 'params (M)', 'deploy params (M)'] + [f'GFLOPs @{s}' for s in sizes] + \
        ['out channels', 'out strides']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in rows:
        cells = [r['arch'], f"{r['widen_factor']}x", f"{r['params_m']:.2f}", f"{r['deploy_params_m']:.2f}"] + \
            [f"{r[f'gflops_{s}']:.3f}" for s in sizes] + [str(tuple(r['out_channels'])), str(tuple(r['out_strides']))]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
