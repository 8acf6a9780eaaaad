"""Run a function right after a module is imported (or now, if it already is).

A meta-path finder that answers only the watched names: it asks the other finders for the
module's spec and wraps the loader so that the callback runs once the module has executed.
Nothing is imported ahead of time, so a fix for a module a process never uses costs nothing.
"""
import sys


class CallbackLoader:
    """The original loader, then the callbacks registered for the module."""

    def __init__(self, loader, callbacks: list):
        self.loader = loader
        self.callbacks = callbacks

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self.loader  # as if imported normally (tools that inspect __loader__)
        module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        for callback in self.callbacks:
            callback(module)


class PostImportFinder:
    """First on ``sys.meta_path``; returns a spec only for watched modules (a duck-typed finder:
    importlib.abc costs 20 ms at interpreter start)."""

    def __init__(self):
        self.callbacks = {}  # module name -> [callback(module)]

    def find_spec(self, fullname, path=None, target=None):
        callbacks = self.callbacks.get(fullname)
        if not callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = CallbackLoader(spec.loader, callbacks)
                return spec
        return None


def _finder() -> PostImportFinder:
    for finder in sys.meta_path:
        if isinstance(finder, PostImportFinder):
            return finder
    finder = PostImportFinder()
    sys.meta_path.insert(0, finder)
    return finder


def when_imported(module_name: str, callback) -> None:
    """Call ``callback(module)`` once ``module_name`` is imported; at once if it already is.
    Registering the same callback twice for a module has no further effect."""
    module = sys.modules.get(module_name)
    if module is not None:
        callback(module)
        return
    callbacks = _finder().callbacks.setdefault(module_name, [])
    if callback not in callbacks:
        callbacks.append(callback)
