"""What ghost_backbones must do in a Python process before any OpenMMLab config is read.

``ghost_backbones_startup.pth`` (installed into site-packages with the wheel and the editable
install) calls :func:`install` at interpreter start. It imports only the standard library and
changes nothing until the modules concerned are imported:

* ``mmcv._ext``: with mmcv-lite (mmcv without compiled ops), the ops module is provided on
  torch / torchvision (:mod:`.mmcv_ext`); a compiled mmcv is used as it is.
* ``mmengine.config.utils``: mmengine 0.10.x resolves ``_base_ = '<package>::...'`` only for the
  package names in its ``MODULE2PACKAGE`` table, and reads ``_base_`` before a config's
  ``custom_imports``; ``ghost_backbones`` is added there, so that configs inherit ours with
  ``ghost_backbones::`` as they inherit mmdet's with ``mmdet::``.
* ``mmengine.config.config``: mmengine 0.10.x finds a package's ``.mim`` folder as
  ``<distribution location>/<package>``; for an editable install made by pip >= 21.3 (PEP 660)
  the distribution's location is site-packages while the package stays in the source tree, so
  ``ghost_backbones::`` configs would not be found. For ``ghost_backbones`` only, the path is taken
  from the imported package's spec (where Python imports it from); other packages are untouched.

Set ``GHOST_BACKBONES_STARTUP=0`` to turn them all off.
"""
import os

from . import mmcv_ext
from .post_import import when_imported

SWITCH = 'GHOST_BACKBONES_STARTUP'
PACKAGE = 'ghost_backbones'


def register_config_scope(config_utils) -> None:
    """Let mmengine resolve ``ghost_backbones::<path>`` (``ghost_backbones/.mim/configs/<path>``)."""
    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)


def find_package_folder(get_installed_path):
    """``get_installed_path`` that answers ``ghost_backbones`` with the folder Python imports it from."""
    def get_installed_path_of(package: str) -> str:
        if package != PACKAGE:
            return get_installed_path(package)
        import importlib.util
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.origin is None:
            return get_installed_path(package)
        return os.path.dirname(spec.origin)
    get_installed_path_of.__wrapped__ = get_installed_path
    return get_installed_path_of


def locate_config_package(config_module) -> None:
    """Let ``ghost_backbones::`` configs resolve under an editable (PEP 660) install."""
    original = config_module.get_installed_path
    if not hasattr(original, '__wrapped__'):
        config_module.get_installed_path = find_package_folder(original)


def install() -> None:
    """Install the hooks (idempotent)."""
    if os.environ.get(SWITCH, '1') == '0':
        return
    mmcv_ext.install()
    when_imported('mmengine.config.utils', register_config_scope)
    when_imported('mmengine.config.config', locate_config_package)
