"""The eager-only fast paths of the deployed network compute the same numbers as the plain ops
they stand for, and tracing (ONNX export, FLOP counts) still sees the plain ops.

* ``multiply_held``: the DFC attention held over blocks by a broadcast product instead of a
  materialised nearest upsampling: the same products, so equal bit for bit.
* ``PointwiseConv2d``: a 1x1 conv on a channels_last CPU input as one matrix product: the same
  sum in another order, so equal to rounding (checked in float64).
"""
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ghost_backbones import GhostNet
from ghost_backbones.models import layers
from helpers import calibrate_bn

CHANNELS_LAST = torch.channels_last


def upsampled_product(out, attention, block):
    """The reference: nearest upsampling materialised, as timm (block 2) and the dilated form."""
    if block == 2:
        return out * F.interpolate(attention, size=out.shape[-2:], mode='nearest')
    held = F.interpolate(attention, scale_factor=block, mode='nearest')
    return out * held[..., :out.shape[-2], :out.shape[-1]]


@pytest.mark.parametrize('block', [2, 4, 6])
@pytest.mark.parametrize('channels_last', [False, True])
def test_held_product_equals_the_upsampled_one_exactly(block, channels_last):
    gen = torch.Generator().manual_seed(block)
    for h, w in [(8, 12), (12, 24), (7, 9), (9, 8), (5, 5), (24, 18), (2, 2)]:
        ah, aw = -(-h // block), -(-w // block)  # the attention covers out (cut where it overhangs)
        if block == 2 and (h % 2 or w % 2):
            ah, aw = h // 2, w // 2  # timm: floor(h / 2) after the 2x2 pool, spread by interpolate
        out = torch.randn(2, 5, h, w, generator=gen)
        attention = torch.rand(2, 5, ah, aw, generator=gen)
        if channels_last:
            out, attention = out.contiguous(memory_format=CHANNELS_LAST), attention.contiguous(memory_format=CHANNELS_LAST)
        got = layers.multiply_held(out, attention, block)
        assert torch.equal(got, upsampled_product(out, attention, block)), f'{h}x{w}, block {block}'
        if channels_last and h > 1 and w > 1:
            assert got.is_contiguous(memory_format=CHANNELS_LAST), 'the product left channels_last'


def test_pointwise_conv_equals_the_conv_in_channels_last_and_keeps_the_layout():
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(24, 40, 1).double()
    pointwise = layers.conv_from(conv, conv.weight.detach(), conv.bias.detach())
    assert isinstance(pointwise, layers.PointwiseConv2d)
    assert pointwise.state_dict().keys() == conv.state_dict().keys()
    for h, w in [(1, 1), (5, 7), (20, 20)]:
        x = torch.randn(2, 24, h, w, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            expected = conv(x)
            torch.testing.assert_close(pointwise(x.contiguous(memory_format=CHANNELS_LAST)), expected,
                                       atol=1e-13, rtol=0)
            assert torch.equal(pointwise(x), expected)  # NCHW takes the conv itself
    with torch.no_grad():
        got = pointwise(torch.randn(2, 24, 5, 7, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST))
    assert got.is_contiguous(memory_format=CHANNELS_LAST)


def test_only_plain_one_by_one_convs_become_pointwise():
    for kwargs in (dict(kernel_size=3, padding=1), dict(kernel_size=1, stride=2), dict(kernel_size=1, groups=4)):
        conv = nn.Conv2d(8, 8, **kwargs)
        assert type(layers.conv_from(conv, conv.weight.detach(), conv.bias.detach())) is nn.Conv2d, kwargs


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
@pytest.mark.parametrize('out_stride', [32, 8])
def test_deployed_channels_last_equals_the_training_structure(arch, out_stride):
    """The deployed network with its fast paths taken (channels_last, even sizes) against the
    training structure in NCHW, float64: within rounding."""
    model = calibrate_bn(GhostNet(arch=arch, out_stride=out_stride)).double()
    x = torch.randn(2, 3, 96, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy().to(memory_format=CHANNELS_LAST)
        got = model(x.contiguous(memory_format=CHANNELS_LAST))
    assert any(isinstance(m, layers.PointwiseConv2d) for m in model.modules())
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-9, rtol=0)


def test_tracing_sees_the_plain_ops():
    """ONNX export and mmengine's FLOP count trace the network: convs and the upsampling (up to
    stage 2: DFC attention, no squeeze-excite, whose deployed form is a matrix product anyway)."""
    model = GhostNet(arch='v2', out_indices=(2,)).switch_to_deploy().to(memory_format=CHANNELS_LAST)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=CHANNELS_LAST)
    with torch.no_grad():
        graph = str(torch.jit.trace(model, x).inlined_graph)
    assert 'aten::linear' not in graph and 'aten::_convolution' in graph
    assert 'upsample_nearest2d' in graph
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, input_names=['images'], opset_version=17, dynamo=False)
    import onnx
    ops = {node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node}
    assert 'Resize' in ops and 'Conv' in ops and not {'MatMul', 'Gemm'} & ops, ops
