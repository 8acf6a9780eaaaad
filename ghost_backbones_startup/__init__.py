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

Set ``GHOST_BACKBONES_STARTUP=0`` to turn both off.
"""
import os

from . import mmcv_ext
from .post_import import when_imported

SWITCH = 'GHOST_BACKBONES_STARTUP'
PACKAGE = 'ghost_backbones'


def register_config_scope(config_utils) -> None:
    """Let mmengine resolve ``ghost_backbones::<path>`` (``ghost_backbones/.mim/configs/<path>``)."""
    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)


def install() -> None:
    """Install both hooks (idempotent)."""
    if os.environ.get(SWITCH, '1') == '0':
        return
    mmcv_ext.install()
    when_imported('mmengine.config.utils', register_config_scope)
