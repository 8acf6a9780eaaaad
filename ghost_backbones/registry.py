"""Our model registry, and registration of the backbone into mmdet's, mmseg's and mmpretrain's.

``MODELS`` is a child of mmengine's root registry with scope ``ghost_backbones``, so
``type='ghost_backbones.GhostNet'`` builds from any OpenMMLab scope. :func:`register_downstream`
also puts our classes into the registries of mmdet, mmseg and mmpretrain (when installed) so that
``type='GhostNet'`` works in their default scopes. Only their registries are imported here.
"""
import importlib
import importlib.util

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='ghost_backbones',
                  locations=['ghost_backbones.models'])

DOWNSTREAM_PACKAGES = ('mmdet', 'mmseg', 'mmpretrain')


class RegistryConflictError(KeyError):
    """Another package registered a different class under one of our names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def same_class(a: type, b: type) -> bool:
    """The same class, or the same class defined again (a reloaded module)."""
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def register_into(registry: Registry, cls: type, name: str = None) -> None:
    """Register ``cls``; refuse to replace another package's class of the same name."""
    name = name or cls.__name__
    existing = registry._module_dict.get(name)
    if existing is not None and not same_class(existing, cls):
        raise RegistryConflictError(
            f'{registry.scope}.{registry.name} already has {name!r} = {existing.__module__}.{existing.__qualname__}; '
            f'ghost_backbones will not replace it with {cls.__module__}.{cls.__qualname__}. Use '
            f"type='ghost_backbones.{name}' to build ours, or remove the other registration")
    registry.register_module(name=name, module=cls, force=True)


def register_downstream(*classes, packages=DOWNSTREAM_PACKAGES) -> list:
    """Register ``classes`` in each installed downstream package's MODELS; returns the names
    of the packages it registered into. A package that is absent is skipped; one that is
    installed but broken raises its own error."""
    registered = []
    for package in packages:
        if importlib.util.find_spec(package) is None:
            continue
        registry = importlib.import_module(f'{package}.registry').MODELS
        for cls in classes:
            register_into(registry, cls)
        registered.append(package)
    return registered
