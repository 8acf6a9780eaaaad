"""Dilated GhostNet (out_stride 16 / 8) follows the atrous rule: on every other pixel (every
4th at out_stride 8) it computes exactly what the strided network computes, with the same
weights, DFC attention included. Squeeze-excite's gate is a mean over the whole map, which
the finer map changes, so it is made position-independent for the exact comparison."""
import pytest
import torch

from ghost_backbones import GhostNet
from ghost_backbones.models import ghostnet, layers
from ghost_backbones.models.ghostnet import NUM_STAGES, BlockPlan
from helpers import calibrate_bn

ALL_STAGES = tuple(range(NUM_STAGES))
ATROUS_RULE = ghostnet.dilation_plan
ATROUS_DFC, ATROUS_APPLY = layers.dfc_attention, layers.apply_dfc_attention


def networks(arch, out_stride):
    strided = calibrate_bn(GhostNet(arch=arch, out_indices=ALL_STAGES), size=64).double()
    dilated = GhostNet(arch=arch, out_indices=ALL_STAGES, out_stride=out_stride).double().eval()
    dilated.load_state_dict(strided.state_dict())
    return strided, dilated


def subgrid_difference(strided, dilated, size=64) -> float:
    """Largest |dilated[::r, ::r] - strided| over all stages, relative to each stage's scale."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        expected, got = strided(x), dilated(x)
    worst = 0.0
    for stage, (e, g, s_e, s_g) in enumerate(zip(expected, got, strided.out_strides, dilated.out_strides)):
        step = s_e // s_g
        sampled = g[..., ::step, ::step]
        assert sampled.shape == e.shape, stage
        worst = max(worst, float((sampled - e).abs().max() / e.abs().max().clamp(min=1e-12)))
    return worst


def old_rule(out_stride):
    """Before the fix: the whole first block of a dilated stage ran at the new rate."""
    return [[BlockPlan(p.stride, p.dilation, p.dilation) for p in stage]
            for stage in ATROUS_RULE(out_stride)]


def old_dfc_attention(in_channels, out_channels, kernel_size, stride, dilation, norm_cfg):
    """Before the fix: DFC's 1x5 / 5x1 convs at the module's rate, on the 2x pooled map."""
    branch = ATROUS_DFC(in_channels, out_channels, kernel_size, stride, 1, norm_cfg)
    branch[2].dilation, branch[2].padding = (1, dilation), (0, 2 * dilation)
    branch[4].dilation, branch[4].padding = (dilation, 1), (2 * dilation, 0)
    return branch


def use_the_code_before_the_fix(monkeypatch):
    monkeypatch.setattr(ghostnet, 'dilation_plan', old_rule)
    monkeypatch.setattr(layers, 'dfc_attention', old_dfc_attention)
    monkeypatch.setattr(layers, 'apply_dfc_attention', lambda out, conv, x, dilation: ATROUS_APPLY(out, conv, x, 1))


@pytest.fixture()
def position_independent(monkeypatch):
    monkeypatch.setattr(layers.SqueezeExcite, 'forward', lambda self, x: x)


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
@pytest.mark.parametrize('out_stride', [16, 8])
def test_dilated_equals_strided_on_the_subgrid(arch, out_stride, position_independent):
    strided, dilated = networks(arch, out_stride)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        expected, got = strided(x), dilated(x)
    for stage, (e, g) in enumerate(zip(expected, got)):
        step = strided.out_strides[stage] // dilated.out_strides[stage]
        torch.testing.assert_close(g[..., ::step, ::step], e, atol=1e-5, rtol=0, msg=f'stage {stage}')


@pytest.mark.parametrize('out_stride', [16, 8])
@pytest.mark.parametrize('arch', ['v1', 'v2'])
def test_the_code_before_the_fix_fails_the_same_comparison(arch, out_stride, position_independent, monkeypatch):
    """The test above can fail: before the fix the difference is far beyond rounding."""
    use_the_code_before_the_fix(monkeypatch)
    assert subgrid_difference(*networks(arch, out_stride)) > 1e-2


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
@pytest.mark.parametrize('out_stride', [16, 8])
def test_with_squeeze_excite_the_fix_brings_the_networks_closer(arch, out_stride, monkeypatch, capsys):
    """Squeeze-excite on: only its global mean differs; before the fix, the first dilated block
    and (v2, v3) the DFC attention did not follow the atrous rule."""
    fixed = subgrid_difference(*networks(arch, out_stride), size=128)
    use_the_code_before_the_fix(monkeypatch)
    before = subgrid_difference(*networks(arch, out_stride), size=128)
    with capsys.disabled():
        print(f'\n{arch} out_stride {out_stride}, squeeze-excite on: largest difference on the sub-grid '
              f'{fixed:.1%} of the output scale (before the fix: {before:.1%})')
    assert fixed < before


def test_squeeze_excite_uses_relu_whatever_the_activation():
    model = GhostNet(act_cfg=dict(type='HSwish'))
    se = model.blocks[3][0].se
    assert isinstance(se.act1, torch.nn.ReLU) and isinstance(model.act1, torch.nn.Hardswish)
    x = torch.linspace(-6, 6, 13).reshape(1, 13, 1, 1)
    torch.testing.assert_close(se.gate(x), torch.clamp(x + 3, 0, 6) / 6)  # hard sigmoid


# ------------------------------------------------------------------ DFC attention on the sub-grid

def full_resolution_dfc_attention(out, short_conv, x, dilation=1):
    """The earlier dilated DFC attention, kept here as the reference: at rate r the whole branch
    runs at full resolution (the 2x2 average of samples r apart at every pixel, zero beyond the
    map; its 1x5 / 5x1 convs at rate 2r) and one value in (2r)^2 is kept and held over 2r x 2r."""
    import copy

    import torch.nn.functional as F
    if dilation == 1:
        return ATROUS_APPLY(out, short_conv, x, 1)
    r = dilation
    branch = copy.deepcopy(short_conv)
    for conv in branch.modules():
        if isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 5):
            conv.dilation, conv.padding = (1, 2 * r), (0, 4 * r)
        elif isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (5, 1):
            conv.dilation, conv.padding = (2 * r, 1), (4 * r, 0)
    padded = F.pad(x, (0, r, 0, r))
    pooled = (padded[..., :-r, :-r] + padded[..., :-r, r:] + padded[..., r:, :-r] + padded[..., r:, r:]) / 4
    attention = torch.sigmoid(branch(pooled))[..., ::2 * r, ::2 * r]
    held = F.interpolate(attention, scale_factor=2 * r, mode='nearest')
    return out * held[..., :out.shape[-2], :out.shape[-1]]


def random_dfc_branch(channels, seed, deploy=False):
    branch = ATROUS_DFC(channels, channels, 1, 1, 2, dict(type='BN'))
    gen = torch.Generator().manual_seed(seed)
    for module in branch.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = torch.randn(module.weight.shape, generator=gen) * 0.5
        elif isinstance(module, torch.nn.BatchNorm2d):
            for t in (module.weight, module.bias, module.running_mean):
                t.data = torch.randn(t.shape, generator=gen) * 0.3
            module.running_var.data = torch.rand(module.running_var.shape, generator=gen) + 0.5
    branch = branch.double().eval()
    return layers.fold_sequential(branch) if deploy else branch


SIZES = [(h, w) for h in (1, 2, 3, 5, 7, 8, 9, 12, 15, 16, 17) for w in (1, 4, 6, 11, 13, 16, 19)]


@pytest.mark.parametrize('rate', [2, 3, 4])
@pytest.mark.parametrize('deploy', [False, True])
def test_sub_grid_dfc_attention_equals_the_full_resolution_form(rate, deploy):
    """Every size from 1 up (odd, even, divisible by 2r or not), float64: the same values; only
    the order of the 2x2 average's additions may differ (avg_pool2d), hence a rounding bound."""
    branch = random_dfc_branch(6, seed=rate, deploy=deploy)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for h, w in SIZES:
            x = torch.randn(2, 6, h, w, generator=gen, dtype=torch.float64)
            out = torch.randn(2, 6, h, w, generator=gen, dtype=torch.float64)
            got = layers.apply_dfc_attention(out, branch, x, rate)
            expected = full_resolution_dfc_attention(out, branch, x, rate)
            assert got.shape == expected.shape == out.shape
            torch.testing.assert_close(got, expected, atol=1e-13, rtol=0, msg=f'{h}x{w} at rate {rate}')


@pytest.mark.parametrize('out_stride', [16, 8])
@pytest.mark.parametrize('size', [64, (67, 45), 50, 33])
def test_dilated_v2_equals_the_full_resolution_attention(out_stride, size, monkeypatch):
    """The whole dilated GhostNetV2 (squeeze-excite on), training structure and deploy mode:
    outputs equal those with the earlier full-resolution attention, at sizes not divisible by
    2r included (the network's maps there are odd)."""
    height, width = (size, size) if isinstance(size, int) else size
    dilated = calibrate_bn(GhostNet(arch='v2', out_indices=ALL_STAGES, out_stride=out_stride), size=64).double()
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    deployed = GhostNet(arch='v2', out_indices=ALL_STAGES, out_stride=out_stride).double().eval()
    deployed.load_state_dict(dilated.state_dict())
    deployed.switch_to_deploy()
    for model in (dilated, deployed):
        with torch.no_grad():
            got = model(x)
            with monkeypatch.context() as patch:
                patch.setattr(layers, 'apply_dfc_attention', full_resolution_dfc_attention)
                expected = model(x)
        for stage, (g, e) in enumerate(zip(got, expected)):
            torch.testing.assert_close(g, e, atol=1e-10, rtol=0, msg=f'stage {stage}')
