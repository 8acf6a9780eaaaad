"""GhostNet builds from config dicts in every scope an OpenMMLab user writes."""
import subprocess
import sys

import pytest

import ghost_backbones
from ghost_backbones import GhostNet

from helpers import CONFIGS

CONFIG = f'{CONFIGS}/ghostnet/ssdlite_ghostnet-1.0x_8xb24-600e_coco-320.py'


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_by_short_name_in_downstream_scope(scope):
    import importlib
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='GhostNet', arch='v2', widen_factor=0.5, out_indices=(9,)))
    assert isinstance(model, GhostNet) and model.arch == 'v2' and model.out_channels == [480]


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmengine'])
def test_build_by_scoped_name_from_any_scope(scope):
    import importlib
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='ghost_backbones.GhostNet', arch='v3'))
    assert isinstance(model, GhostNet) and model.arch == 'v3'


def test_own_registry():
    model = ghost_backbones.MODELS.build(dict(type='GhostNet', widen_factor=1.3))
    assert model.out_channels == [32, 52, 144, 1248]


def test_custom_imports_line_registers_in_a_fresh_process():
    code = (
        "from mmengine.config import Config\n"
        "from mmdet.registry import MODELS\n"
        "from mmdet.utils import register_all_modules\n"
        "register_all_modules()\n"
        f"cfg = Config.fromfile({CONFIG!r})\n"
        "print(type(MODELS.build(cfg.model).backbone).__name__)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith('GhostNet')


def test_import_without_mmdet_and_mmseg():
    """The package imports (and registers in its own registry) when neither is installed."""
    code = (
        "import sys, importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in ('mmdet', 'mmseg') else real(n, *a)\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mmdet', 'mmseg'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import ghost_backbones\n"
        "m = ghost_backbones.MODELS.build(dict(type='GhostNet'))\n"
        "assert 'mmdet' not in sys.modules and 'mmseg' not in sys.modules\n"
        "print(m.out_channels)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[24, 40, 112, 960]'
