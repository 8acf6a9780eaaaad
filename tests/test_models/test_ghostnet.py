"""GhostNet backbone: timm parity, shapes, conventions (as mmdet's MobileNetV2 tests), deploy mode."""
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ghost_backbones import GhostNet
from ghost_backbones.models import layers
from ghost_backbones.models.ghostnet import NUM_STAGES
from helpers import calibrate_bn, randomize, timm_model

def timm_stage_outputs(model: nn.Module, x: torch.Tensor):
    x = model.act1(model.bn1(model.conv_stem(x)))
    outs = []
    for stage in model.blocks:
        x = stage(x)
        outs.append(x)
    return outs


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
@pytest.mark.parametrize('width', [0.5, 1.0, 1.3])
def test_timm_parity(arch, width):
    reference = randomize(timm_model(arch, width)).eval()
    ours = GhostNet(arch=arch, widen_factor=width, out_indices=tuple(range(NUM_STAGES))).eval()
    state = {k: v for k, v in reference.state_dict().items()
             if not k.startswith(('conv_head', 'classifier'))}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = timm_stage_outputs(reference, x)
        got = ours(x)
    assert len(got) == len(expected) == NUM_STAGES
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, f'stage {i}'
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f'stage {i} differs from timm')


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
def test_default_outputs_and_channels(arch):
    model = GhostNet(arch=arch).eval()
    assert model.out_channels == [24, 40, 112, 960]
    assert model.out_strides == [4, 8, 16, 32]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape for o in outs] == [
        (1, 24, 16, 24), (1, 40, 8, 12), (1, 112, 4, 6), (1, 960, 2, 3)]


@pytest.mark.parametrize('out_stride, strides', [
    (32, [2, 4, 4, 8, 8, 16, 16, 32, 32, 32]),
    (16, [2, 4, 4, 8, 8, 16, 16, 16, 16, 16]),
    (8, [2, 4, 4, 8, 8, 8, 8, 8, 8, 8]),
])
def test_every_stage_shape_for_each_out_stride(out_stride, strides):
    model = GhostNet(arch='v2', widen_factor=0.5, out_indices=tuple(range(NUM_STAGES)),
                     out_stride=out_stride).eval()
    assert model.out_strides == strides
    assert model.out_channels == [8, 12, 12, 20, 20, 40, 56, 80, 80, 480]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    for out, stride, channels in zip(outs, strides, model.out_channels):
        assert out.shape == (1, channels, 64 // stride, 64 // stride)


def test_out_indices_order_and_single_index():
    model = GhostNet(out_indices=(9, 2)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [960, 24] == model.out_channels
    assert len(GhostNet(out_indices=4)(torch.randn(1, 3, 32, 32))) == 1


@pytest.mark.parametrize('arch', ['v1', 'v3'])
def test_dilated_stages_keep_weights_and_see_the_same_scene(arch):
    """out_stride 16 has the same state-dict layout; its stride-32 features agree with the
    undilated network's at a coarse level (same weights, dilation instead of stride)."""
    base = GhostNet(arch=arch, out_stride=32)
    dilated = GhostNet(arch=arch, out_stride=16)
    assert {k: v.shape for k, v in base.state_dict().items()} == \
        {k: v.shape for k, v in dilated.state_dict().items()}
    conv = dilated.blocks[8][0].ghost1.cheap_operation[0] if arch == 'v1' \
        else dilated.blocks[8][0].ghost1.cheap_rpr_conv[0].conv
    assert conv.dilation == (2, 2) and conv.padding == (2, 2)
    assert dilated.blocks[7][0].shortcut[0].stride == (1, 1)


def test_frozen_stages():
    frozen_stages = 3
    model = GhostNet(frozen_stages=frozen_stages)
    model.train()
    for module in [model.conv_stem, model.bn1]:
        for param in module.parameters():
            assert not param.requires_grad
    assert not model.bn1.training
    for i, stage in enumerate(model.blocks):
        frozen = i < frozen_stages
        for module in stage.modules():
            if isinstance(module, _BatchNorm):
                assert module.training is not frozen
        for param in stage.parameters():
            assert param.requires_grad is not frozen


def test_norm_eval():
    model = GhostNet(norm_eval=True)
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    model = GhostNet(norm_eval=False).train()
    assert all(m.training for m in model.modules() if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('norm_cfg', [dict(type='GN', num_groups=4, requires_grad=True),
                                      dict(type='SyncBN', requires_grad=True)])
def test_norm_cfg(norm_cfg):
    from torch.nn import GroupNorm, SyncBatchNorm
    model = GhostNet(widen_factor=1.0, norm_cfg=norm_cfg, out_indices=(6,))
    wanted = GroupNorm if norm_cfg['type'] == 'GN' else SyncBatchNorm
    assert isinstance(model.bn1, wanted)
    assert isinstance(model.blocks[6][0].ghost1.primary_conv[1], wanted)
    if norm_cfg['type'] == 'GN':
        assert model(torch.randn(2, 3, 32, 32))[0].shape == (2, 112, 2, 2)


def test_act_cfg():
    model = GhostNet(act_cfg=dict(type='HSwish'))
    assert isinstance(model.act1, nn.Hardswish)
    assert isinstance(model.blocks[0][0].ghost1.primary_conv[2], nn.Hardswish)
    assert isinstance(model.blocks[0][0].ghost2.primary_conv[2], nn.Identity)  # ghost2 stays linear


@pytest.mark.parametrize('arch', ['v1', 'v3'])
def test_with_cp_same_outputs_and_gradients(arch):
    torch.manual_seed(0)
    plain = GhostNet(arch=arch, widen_factor=0.5, out_indices=(2, 4, 6, 9)).train()
    checkpointed = GhostNet(arch=arch, widen_factor=0.5, out_indices=(2, 4, 6, 9), with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outs_a = plain(x.clone().requires_grad_())
    outs_b = checkpointed(x.clone().requires_grad_())
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in outs_a).backward()
    sum(o.sum() for o in outs_b).backward()
    grads_a = dict((n, p.grad) for n, p in plain.named_parameters())
    for name, param in checkpointed.named_parameters():
        torch.testing.assert_close(param.grad, grads_a[name], msg=name)


# Deploy mode in float64 (unit roundoff 1.1e-16) through ~100 folded layers with O(1)-O(10)
# activations: rounding stays below 1e-11; a fold that forgets BatchNorm's eps (1e-5 against
# running variances of order 1) is off by 1e-6 or more (see the test after).
DEPLOY_ATOL = 1e-9


def deploy_difference(arch, out_stride=32):
    model = calibrate_bn(GhostNet(arch=arch, widen_factor=1.0, out_stride=out_stride)).double()
    x = torch.randn(2, 3, 80, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        got = model(x)
    assert not any(isinstance(m, _BatchNorm) for m in model.modules()), 'a BatchNorm was left unfolded'
    return max(float((a - b).abs().max()) for a, b in zip(got, expected))


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
@pytest.mark.parametrize('out_stride', [32, 8])
def test_deploy_equals_training_structure(arch, out_stride):
    """In float64, so that what is compared is the structure and not float32 rounding (which
    the ONNX tests cover)."""
    assert deploy_difference(arch, out_stride) < DEPLOY_ATOL


def test_a_fold_without_eps_fails_the_deploy_bound(monkeypatch):
    def fold_without_eps(kernel, norm):
        scale = norm.weight / norm.running_var.sqrt()
        return kernel * scale.reshape(-1, 1, 1, 1), norm.bias - norm.running_mean * scale
    monkeypatch.setattr(layers, 'conv_norm_kernel_bias', fold_without_eps)
    assert deploy_difference('v1') > DEPLOY_ATOL


def test_deploy_v3_has_one_conv_per_branch_group():
    """Re-parameterised, v3 is v2's deployed structure: same convs, same parameter count."""
    model = GhostNet(arch='v3').switch_to_deploy()
    block = model.blocks[3][0]
    assert not hasattr(block, 'dw_rpr_conv') and isinstance(block.conv_dw, nn.Conv2d)
    assert not hasattr(block.ghost1, 'primary_rpr_conv')
    v2 = GhostNet(arch='v2').switch_to_deploy()
    assert sorted(tuple(p.shape) for p in model.parameters()) == sorted(tuple(p.shape) for p in v2.parameters())


@pytest.mark.parametrize('kwargs, bad', [
    (dict(arch='v4'), "'v4'"),
    (dict(out_indices=(2, 10)), '10'),
    (dict(out_indices=(-1,)), '-1'),
    (dict(out_indices=()), '()'),
    (dict(frozen_stages=11), '11'),
    (dict(frozen_stages=-2), '-2'),
    (dict(widen_factor=0), '0'),
    (dict(widen_factor=-0.5), '-0.5'),
    (dict(out_stride=4), '4'),
    (dict(out_stride=64), '64'),
])
def test_bad_arguments_name_the_value(kwargs, bad):
    with pytest.raises(ValueError) as info:
        GhostNet(**kwargs)
    name = next(iter(kwargs))
    assert name in str(info.value) and bad in str(info.value)


@pytest.mark.parametrize('timm_module, ours', [
    ('GhostModule', lambda: layers.GhostModule(6, 7)),
    ('GhostModuleV2', lambda: layers.GhostModule(6, 7, attention=True)),
    ('GhostModuleV3', lambda: layers.RepGhostModule(6, 7, attention=True)),
])
def test_ghost_module_of_odd_width_equals_timm_in_training_and_deploy(timm_module, ours):
    """An odd ``out_channels`` is the one case that cuts the concatenated maps (GhostNet's own
    widths are multiples of 4, so a cut that keeps everything is skipped): timm's module is the
    reference, before and after folding."""
    from timm.models import ghostnet as timm_ghostnet
    kwargs = dict(mode='shortcut') if timm_module == 'GhostModuleV3' else {}
    reference = randomize(getattr(timm_ghostnet, timm_module)(6, 7, **kwargs)).eval()
    module = ours().eval()
    module.load_state_dict(reference.state_dict())
    assert module.trim
    x = torch.randn(2, 6, 10, 14, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(x)
        got = module(x)
        module.switch_to_deploy()
        deployed = module(x)
    assert expected.shape == got.shape == deployed.shape == (2, 7, 10, 14)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(deployed, expected, rtol=0, atol=1e-5)
