"""Our model registry, and registration of the backbone into mmdet's and mmseg's.

``MODELS`` is a child of mmengine's root registry with scope ``ghost_backbones``, so
``type='ghost_backbones.GhostNet'`` builds from any OpenMMLab scope. :func:`register_downstream`
also puts the class into the registries of mmdet and mmseg (when they are installed) so that
``type='GhostNet'`` works in their default scopes. Only their registries are imported here.
"""
import importlib
import importlib.util

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='ghost_backbones',
                  locations=['ghost_backbones.models'])

DOWNSTREAM_PACKAGES = ('mmdet', 'mmseg', 'mmpretrain')


def register_downstream(*classes) -> list:
    """Register ``classes`` in each installed downstream package's MODELS; returns the names
    of the packages it registered into. A package that is absent is skipped; one that is
    installed but broken raises its own error."""
    registered = []
    for package in DOWNSTREAM_PACKAGES:
        if importlib.util.find_spec(package) is None:
            continue
        registry = importlib.import_module(f'{package}.registry').MODELS
        for cls in classes:
            registry.register_module(module=cls, force=True)
        registered.append(package)
    return registered
