"""The upstream fixes apply where they must and nowhere else (ghost_backbones/compat.py)."""
import os.path as osp
import subprocess
import sys
import types

import pytest
import torch

import ghost_backbones  # noqa: F401  (applies the compat fixes)
from ghost_backbones import compat


def run_python(code, **env):
    import os
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=dict(os.environ, **env))


def test_importing_the_plugin_does_not_import_mmdet_models():
    """The SSDHead fix waits for mmdet to import its SSD head (an mmseg user never pays for it)."""
    code = ('import sys, ghost_backbones\n'
            'print("mmdet.models" in sys.modules)\n'
            'from mmdet.models.dense_heads import SSDHead\n'
            'print(getattr(SSDHead.__init__, "_ghost_backbones_fix", False))\n')
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ['False', 'True']


def test_ssd_head_fix_also_applies_when_mmdet_came_first():
    code = ('from mmdet.models.dense_heads import SSDHead\n'
            'import ghost_backbones\n'
            'print(getattr(SSDHead.__init__, "_ghost_backbones_fix", False))\n')
    assert run_python(code).stdout.split() == ['True']


HIDE = '''
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {hidden!r}:
            raise ModuleNotFoundError('hidden ' + name)
sys.meta_path.insert(0, Hide())
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in {hidden!r} else real(n, *a)
'''


def test_import_without_mmdet_still_serves_mmseg():
    code = HIDE.format(hidden=('mmdet',)) + (
        'import ghost_backbones\n'
        'from mmseg.registry import MODELS\n'
        'from mmengine.registry import DefaultScope\n'
        'with DefaultScope.overwrite_default_scope("mmseg"):\n'
        '    model = MODELS.build(dict(type="GhostNet", widen_factor=0.5))\n'
        'assert not any(name.startswith("mmdet") for name in sys.modules)\n'
        'print(type(model).__name__, model.out_channels)\n')
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == 'GhostNet [12, 20, 56, 480]'


def test_stock_ssdlite_mobilenetv2_predicts_boxes():
    """mmdet 3.3.0's SSDHead lacks loss_cls: predict used to raise AttributeError."""
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    register_all_modules()
    cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'ssd',
                                   'ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.score_thr = 0.0
    model = MODELS.build(cfg.model).eval()
    images = torch.randn(1, 3, 320, 320)
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(320, 320), scale_factor=(1., 1.),
                                         pad_shape=(320, 320), batch_input_shape=(320, 320)))
    with torch.no_grad():
        results = model.predict(images, [sample])
    boxes = results[0].pred_instances.bboxes
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    assert results[0].pred_instances.labels.max() < 80
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 20., 200., 220.]]), labels=torch.tensor([3]))
    model.train()
    losses = model.loss(torch.cat([images, images]), [sample, sample])
    assert torch.isfinite(sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                              for v in losses.values()))


@pytest.fixture()
def distributed_calls(monkeypatch):
    """Records what mmengine's torchrun initialisation does, without starting a process group."""
    from mmengine.dist import utils as dist_utils
    calls = []
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setattr(dist_utils.torch_dist, 'init_process_group', lambda **kw: calls.append(('init', kw)))
    return calls


def test_cpu_distributed_path_only_where_the_device_is_the_cpu(distributed_calls, monkeypatch):
    from mmengine.dist import utils as dist_utils
    monkeypatch.setattr(compat, 'runs_on_cpu', lambda: True)
    dist_utils._init_dist_pytorch('nccl')
    assert distributed_calls == [('init', {'backend': 'gloo'})]

    # an Ascend NPU machine keeps mmengine's own path (hccl, torch.npu.set_device)
    distributed_calls.clear()
    npu = types.SimpleNamespace(set_device=lambda index: distributed_calls.append(('npu.set_device', index)))
    monkeypatch.setattr(compat, 'runs_on_cpu', lambda: False)
    monkeypatch.setattr(dist_utils, 'is_mlu_available', lambda: False)
    monkeypatch.setattr(dist_utils, 'is_npu_available', lambda: True)
    monkeypatch.setattr(torch, 'npu', npu, raising=False)
    monkeypatch.setitem(sys.modules, 'torch_npu', types.ModuleType('torch_npu'))
    dist_utils._init_dist_pytorch('nccl')
    assert distributed_calls == [('npu.set_device', 0), ('init', {'backend': 'hccl', 'rank': 0, 'world_size': 1})]


def test_ddp_device_ids_dropped_only_for_cpu(monkeypatch):
    from mmengine.model.wrappers import MMDistributedDataParallel
    seen = {}
    import torch.nn.parallel as parallel
    monkeypatch.setattr(parallel.DistributedDataParallel, '__init__',
                        lambda self, module, *args, **kwargs: seen.update(kwargs))
    module = torch.nn.Linear(1, 1)
    monkeypatch.setattr(compat, 'runs_on_cpu', lambda: True)
    MMDistributedDataParallel(module=module, device_ids=[0])
    assert seen['device_ids'] is None
    monkeypatch.setattr(compat, 'runs_on_cpu', lambda: False)
    MMDistributedDataParallel(module=module, device_ids=[0])
    assert seen['device_ids'] == [0]


def test_fixes_are_gated_on_versions():
    assert compat.version_in('0.10.7', '0.10.0', '0.11.0') and not compat.version_in('0.11.0', '0.10.0', '0.11.0')
    assert compat.version_in('3.3.0', '3.0.0', '3.4.0') and not compat.version_in('3.4.0', '3.0.0', '3.4.0')
    code = ('import mmengine\n'
            'mmengine.__version__ = "0.11.0"\n'
            'import ghost_backbones\n'
            'from mmengine.runner.checkpoint import CheckpointLoader\n'
            'from mmengine.logging import HistoryBuffer\n'
            'print(CheckpointLoader._schemes[""].__module__, "__reduce__" in vars(HistoryBuffer))\n')
    assert run_python(code).stdout.split() == ['mmengine.runner.checkpoint', 'False']


def test_another_packages_ghostnet_is_not_replaced():
    from mmengine.registry import Registry
    from ghost_backbones import GhostNet
    from ghost_backbones.registry import RegistryConflictError, register_into
    registry = Registry('model', scope='somebody_else')

    @registry.register_module(name='GhostNet')
    class TheirGhostNet(torch.nn.Module):
        pass

    with pytest.raises(RegistryConflictError) as info:
        register_into(registry, GhostNet)
    assert 'TheirGhostNet' in str(info.value) and 'ghost_backbones.models.ghostnet.GhostNet' in str(info.value)
    assert registry.get('GhostNet') is TheirGhostNet
    ours = Registry('model', scope='mine')
    register_into(ours, GhostNet)
    register_into(ours, GhostNet)  # registering our own class again is fine
    assert ours.get('GhostNet') is GhostNet
