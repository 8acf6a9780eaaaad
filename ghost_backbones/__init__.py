"""GhostNet v1/v2/v3 backbones for OpenMMLab.

Importing the package applies the upstream fixes in :mod:`ghost_backbones.compat` and
registers ``GhostNet`` in our registry and in mmdet's / mmseg's (when installed).
"""
from . import compat
from .models import GhostNet
from .registry import MODELS, register_downstream
from .version import __version__

compat.apply()
register_downstream(GhostNet)

__all__ = ['GhostNet', 'MODELS', '__version__']
