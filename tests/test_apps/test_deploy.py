"""Deploy mode and ONNX: onnxruntime gives PyTorch's numbers (atol 1e-4), with a dynamic batch."""
import subprocess
import sys

import pytest
import torch

from ghost_backbones import GhostNet
from ghost_backbones.apps.deploy import (build_from_config, compare_with_onnxruntime, deploy_backbone, export_onnx,
                                    wrap_for_export)

from helpers import CONFIGS, calibrate_bn, tool


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
def test_backbone_onnx_matches_eager_training_structure(arch, tmp_path):
    model = calibrate_bn(GhostNet(arch=arch, widen_factor=0.5), size=96)
    images = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = model(images)
    deployed = deploy_backbone(model)
    path = str(tmp_path / f'{arch}.onnx')
    names = export_onnx(deployed, torch.randn(1, 3, 96, 96), path)
    assert len(names) == 4
    assert compare_with_onnxruntime(deployed, path, images) < 1e-4  # batch 3 through a batch-1 export
    import onnx
    slices = sum(node.op_type == 'Slice' for node in onnx.load(path).graph.node)
    attention_modules = sum(getattr(m, 'attention', False) is True for m in deployed.modules())
    # one per attention (its up-sampling size); no copy for a channel cut that keeps every channel
    assert slices == attention_modules == (0 if arch == 'v1' else 14)
    import onnxruntime
    got = onnxruntime.InferenceSession(path).run(None, {'images': images.numpy()})
    for g, e in zip(got, eager):  # deploy + ONNX against the training structure, float32
        scale = max(1.0, e.abs().max().item())
        torch.testing.assert_close(torch.from_numpy(g) / scale, e / scale, atol=1e-4, rtol=0)


@pytest.mark.parametrize('config', ['ssdlite_ghostnet-1.0x_synthetic-160.py', 'fpn_ghostnet-1.0x_synthetic-160.py'])
def test_whole_model_onnx(config, tmp_path):
    model = build_from_config(f'{CONFIGS}/synthetic/{config}')
    calibrate_bn(model.backbone, 160)
    module = wrap_for_export(deploy_backbone(model))
    path = str(tmp_path / 'model.onnx')
    export_onnx(module, torch.randn(1, 3, 160, 160), path)
    images = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    assert compare_with_onnxruntime(module, path, images) < 1e-4


def test_export_tool(tmp_path):
    out = tmp_path / 'v2.onnx'
    result = subprocess.run([sys.executable, tool('deploy', 'export_onnx.py'), '--arch', 'v2',
                             '--widen-factor', '0.5', '--size', '64', '--out', str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.exists() and 'max |diff| / output scale' in result.stdout
