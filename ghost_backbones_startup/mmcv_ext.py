"""``mmcv._ext``, mmcv's compiled-ops module, for mmcv-lite: a finder and a loader.

mmcv-lite (the pure-Python mmcv wheel) ships every ``mmcv.ops`` wrapper but not the compiled
``mmcv._ext`` they load, so ``import mmcv.ops`` (which mmdet's heads import) fails. The finder
sits at the *end* of ``sys.meta_path`` and answers only ``mmcv._ext``, so it is asked only when
no compiled module exists: a compiled mmcv in the same environment is always used as it is.
torch is imported only when ``mmcv._ext`` itself is (:mod:`.mmcv_ops` holds the functions).
"""
import importlib
import importlib.machinery
import sys

MODULE_NAME = 'mmcv._ext'


class MmcvExtLoader:
    """Fills the module from :mod:`.mmcv_ops`; any other name raises a clear error when called."""

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        from . import mmcv_ops
        module.__dict__.update(mmcv_ops.exported_functions())
        module.__getattr__ = mmcv_ops.not_implemented


class MmcvExtFinder:
    """A meta-path finder (duck-typed: importlib.abc costs 20 ms at every interpreter start)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != MODULE_NAME:
            return None
        return importlib.machinery.ModuleSpec(fullname, MmcvExtLoader(), origin=f'{__package__}.mmcv_ops')


def install() -> None:
    """Append the finder to ``sys.meta_path`` once."""
    if not any(isinstance(finder, MmcvExtFinder) for finder in sys.meta_path):
        sys.meta_path.append(MmcvExtFinder())


def provider() -> str:
    """Which ``mmcv._ext`` this process uses: 'compiled' (mmcv's own), 'torchvision' (ours), or
    'none' when neither loads (mmcv not installed)."""
    try:
        module = importlib.import_module(MODULE_NAME)
    except ImportError:
        return 'none'
    return 'torchvision' if isinstance(getattr(module, '__loader__', None), MmcvExtLoader) else 'compiled'
