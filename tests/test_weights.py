"""ImageNet weights from timm / the official releases load through init_cfg, strictly."""
import subprocess
import sys

import pytest
import timm
import torch

from ghost_backbones import GhostNet
from ghost_backbones.checkpoint import CheckpointError
from ghost_backbones.weights import CheckpointKeyError, convert_checkpoint


def timm_checkpoint(tmp_path, name='ghostnet_100', seed=0, transform=None):
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith('running_mean'):
                tensor.normal_(0, 0.1)
            elif key.endswith('running_var'):
                tensor.uniform_(0.5, 1.5)
    state = model.state_dict()
    if transform:
        state = transform(state)
    path = tmp_path / f'{name}.pth'
    torch.save(state, str(path))
    return model, str(path)




def test_pretrained_init_cfg_loads_timm_weights(tmp_path):
    reference, path = timm_checkpoint(tmp_path)
    ours = GhostNet(out_indices=(9,), init_cfg=dict(type='Pretrained', checkpoint=path))
    ours.init_weights()
    ours.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_features(x)
        got = ours(x)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_official_v3_names_and_nesting(tmp_path):
    """The official GhostNetV3 release says ``bn`` where timm says ``bn1``, nests the weights
    under ``state_dict`` and may carry FLOP counters."""
    def official(state):
        renamed = {}
        for key, value in state.items():
            if '.ghost' in key or '.dw_rpr_' in key:
                key = key.replace('bn1.', 'bn.')
            renamed[key] = value
        renamed['blocks.0.0.total_ops'] = torch.zeros(1)
        return {'state_dict': renamed, 'epoch': 300}

    reference, path = timm_checkpoint(tmp_path, 'ghostnetv3_050', transform=official)
    assert any('.bn.' in k for k in torch.load(path)['state_dict'])
    ours = GhostNet(arch='v3', widen_factor=0.5, out_indices=(9,), init_cfg=dict(type='Pretrained', checkpoint=path))
    ours.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x)[0], reference.forward_features(x), atol=1e-5, rtol=1e-5)


def test_wrong_width_is_an_error_naming_the_keys(tmp_path):
    _, path = timm_checkpoint(tmp_path)
    model = GhostNet(widen_factor=0.5, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointKeyError) as info:
        model.init_weights()
    message = str(info.value)
    assert path in message and 'shape mismatch (' in message
    assert 'blocks.0.0.ghost1.primary_conv.0.weight: checkpoint (8, 16, 1, 1) vs model (4, 8, 1, 1)' in message


def test_wrong_arch_is_an_error_naming_the_keys(tmp_path):
    _, path = timm_checkpoint(tmp_path)  # v1 weights
    model = GhostNet(arch='v2', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointKeyError) as info:
        model.init_weights()
    assert 'missing in checkpoint' in str(info.value) and 'short_conv' in str(info.value)


def test_unexpected_keys_are_named(tmp_path):
    def extra(state):
        state['blocks.3.0.mystery.weight'] = torch.zeros(3)
        return state
    _, path = timm_checkpoint(tmp_path, transform=extra)
    with pytest.raises(CheckpointKeyError, match='unexpected in checkpoint.*blocks.3.0.mystery.weight'):
        GhostNet(init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


def test_detector_checkpoint_with_prefix(tmp_path):
    source = GhostNet(arch='v2', widen_factor=0.5)
    detector_state = {'backbone.' + k: v for k, v in source.state_dict().items()}
    detector_state['neck.conv.weight'] = torch.zeros(1)
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': detector_state, 'meta': {'epoch': 3}}, str(path))
    model = GhostNet(arch='v2', widen_factor=0.5,
                     init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_convert_weights_tool(tmp_path, repo_root):
    reference, path = timm_checkpoint(tmp_path, transform=lambda s: {'model': s})
    out = tmp_path / 'converted.pth'
    result = subprocess.run([sys.executable, f'{repo_root}/tools/convert_weights.py', path, str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    state = torch.load(str(out), weights_only=True)['state_dict']
    assert not any(k.startswith(('classifier', 'conv_head')) for k in state)
    model = GhostNet(out_indices=(9,), init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[0], reference.forward_features(x), atol=1e-5, rtol=1e-5)


def test_convert_nothing_under_prefix(tmp_path):
    _, path = timm_checkpoint(tmp_path)
    with pytest.raises(CheckpointKeyError, match="prefix 'backbone.'"):
        convert_checkpoint(path, str(tmp_path / 'x.pth'), prefix='backbone.')


def test_pretrained_inside_a_list_init_cfg_is_strict_and_applied_last(tmp_path):
    reference, path = timm_checkpoint(tmp_path)
    ours = GhostNet(out_indices=(9,), init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                                                 dict(type='Pretrained', checkpoint=path)])
    ours.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x)[0], reference.forward_features(x), atol=1e-5, rtol=1e-5)
    wrong = GhostNet(widen_factor=0.5, init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                                                 dict(type='Pretrained', checkpoint=path)])
    with pytest.raises(CheckpointKeyError, match='shape mismatch'):
        wrong.init_weights()


def test_unreadable_init_cfg_checkpoint(tmp_path):
    bad = tmp_path / 'imagenet.pth'
    bad.write_bytes(b'\x80\x02}q\x00')  # a pickle cut short
    with pytest.raises(CheckpointError, match='imagenet.pth'):
        GhostNet(init_cfg=dict(type='Pretrained', checkpoint=str(bad))).init_weights()
