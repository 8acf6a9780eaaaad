"""The OneDL venv is OneDL's alone, and each compatibility fix applies there exactly where OneDL's code
needs it (ghost_backbones/compat.py, NEEDED_BY), with the evidence that it does."""
import importlib.metadata as metadata
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import ghost_backbones  # noqa: F401  (applies the compat fixes)
from ghost_backbones import compat

UPSTREAM = {'mmengine', 'mmcv', 'mmcv-lite', 'mmdet', 'mmsegmentation', 'mmpretrain'}


def run_python(code, **env):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300)


def test_every_module_comes_from_onedl_and_no_upstream_distribution_is_installed():
    installed = {d.metadata['Name'].lower() for d in metadata.distributions()}
    assert not installed & UPSTREAM, installed & UPSTREAM
    for module, distribution in compat.ONEDL_DISTRIBUTIONS.items():
        assert compat.stack_of(module) == compat.ONEDL
        assert distribution in installed
        files = {str(f).split('/')[0] for f in metadata.distribution(distribution).files or ()}
        assert module in files, (module, distribution)  # the distribution writes that module's folder


def test_pip_check_is_clean():
    result = subprocess.run([sys.executable, '-m', 'pip', 'check'], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mmcv_ops_come_from_the_package_unless_onedl_mmcv_was_compiled():
    """onedl-mmcv from its PyPI source, built without torch, has no mmcv._ext: ours serves nms & co."""
    import glob
    import mmcv
    from mmcv.ops import nms
    from ghost_backbones_startup.mmcv_ext import provider
    compiled = bool(glob.glob(os.path.join(os.path.dirname(mmcv.__file__), '_ext*.so')))
    assert provider() == ('compiled' if compiled else 'torchvision')
    _, keep = nms(torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]]), torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]


def test_the_fixes_applied_are_those_onedl_needs():
    import mmdet.models.dense_heads.ssd_head  # noqa: F401  (the SSDHead fix waits for it)
    assert compat.applied() == ['base_scopes', 'checkpoints_as_data', 'config_scope', 'cpu_distributed',
                                'inferencer_config_when_trusted', 'onedl_distributions', 'resume_without_config_text',
                                'safe_torch_load_as_data', 'ssd_head_loss_cls']


def test_an_inferencer_builds_from_a_checkpoints_config_only_when_trusted(tmp_path):
    """Fix 8 under OneDL: BaseInferencer given weights alone refuses an untrusted checkpoint before mmengine's
    Config.fromstring would run its config text."""
    import torch
    from mmengine.config import ConfigDict
    from mmengine.infer.infer import BaseInferencer
    from ghost_backbones.checkpoint import UnsafeCheckpointError
    marker = tmp_path / 'ran'
    path = tmp_path / 'hostile.pth'
    torch.save({'meta': {'cfg': f"model = __import__('os').system('touch {marker}')"}}, str(path))
    with pytest.raises(UnsafeCheckpointError, match='given weights alone'):
        BaseInferencer._init_model(None, ConfigDict(), str(path))
    assert not marker.exists()


def test_fixes_are_gated_on_the_onedl_versions(monkeypatch):
    import mmdet
    import mmengine
    assert compat.needs('ssd_head_loss_cls') and compat.needs('safe_torch_load_as_data')
    monkeypatch.setattr(mmdet, '__version__', '3.6.0')  # a later OneDL release: not assumed to need it
    assert not compat.needs('ssd_head_loss_cls')
    monkeypatch.setattr(mmdet, '__version__', '3.3.0')  # never a OneDL version
    assert not compat.needs('ssd_head_loss_cls')
    monkeypatch.setattr(mmengine, '__version__', '0.11.0')
    assert not any(compat.needs(fix) for fix in compat.NEEDED_BY if fix != 'ssd_head_loss_cls')


def test_onedl_ssd_head_still_lacks_loss_cls_without_the_fix():
    """onedl-mmdetection 3.5.1's SSDHead.__init__ sets no loss_cls (BaseDenseHead.predict reads it)."""
    from mmdet.models.dense_heads import SSDHead
    fixed = SSDHead(num_classes=3, in_channels=(8, 8), anchor_generator=dict(
        type='SSDAnchorGenerator', scale_major=False, input_size=64, strides=[16, 32],
        ratios=[[2], [2]], min_sizes=[8, 16], max_sizes=[16, 32]))
    assert fixed.loss_cls is None
    bare = SSDHead.__new__(SSDHead)
    SSDHead.__init__.__wrapped__(bare, num_classes=3, in_channels=(8, 8), anchor_generator=dict(
        type='SSDAnchorGenerator', scale_major=False, input_size=64, strides=[16, 32],
        ratios=[[2], [2]], min_sizes=[8, 16], max_sizes=[16, 32]))
    assert not hasattr(bare, 'loss_cls')


MMSEG_BASE = '''
import sys
from mmengine.config import Config
try:
    cfg = Config.fromfile(sys.argv[1])
    print('resolved', cfg.default_scope, type(cfg.model).__name__)
except Exception as error:
    print('failed', type(error).__name__, error)
'''


def test_mmseg_bases_need_the_table_fix(tmp_path):
    """OneDL's MODULE2PACKAGE maps mmseg to the distribution 'mmsegmentation': without the startup hook
    ``mmseg::`` bases fail; with it (interpreter start, before any custom_imports) they resolve."""
    config = tmp_path / 'user.py'
    config.write_text("_base_ = ['mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/default_runtime.py']\n")
    code = f'import sys; sys.argv = ["x", {str(config)!r}]\n' + MMSEG_BASE
    without = run_python(code, GHOST_BACKBONES_STARTUP='0')
    assert without.stdout.startswith('failed ModuleNotFoundError') and 'mmsegmentation' in without.stdout, (
        without.stdout + without.stderr[-2000:])
    with_hook = run_python(code)
    assert with_hook.stdout.split() == ['resolved', 'mmseg', 'ConfigDict'], with_hook.stdout + with_hook.stderr[-2000:]
    from mmengine.config.utils import MODULE2PACKAGE
    assert MODULE2PACKAGE['mmseg'] == 'mmseg' and MODULE2PACKAGE['mmdet'] == 'mmdet'


def test_onedl_safe_torch_load_falls_back_to_full_unpickling_and_is_replaced():
    """onedl-mmengine's ``_safe_torch_load`` retries with weights_only=False on any UnpicklingError; with the
    plugin imported it is ours (data only)."""
    import inspect
    from mmengine.runner import checkpoint as mmengine_checkpoint
    replaced = mmengine_checkpoint._safe_torch_load
    assert getattr(replaced, compat.FIXED_MARK, False)
    original = inspect.getsource(replaced.__wrapped__)
    assert 'weights_only=False' in original and 'UnpicklingError' in original
