"""Tests of the OneDL stack (onedl-mmengine, onedl-mmcv, onedl-mmdetection, onedl-mmsegmentation,
onedl-mmpretrain), run by the OneDL venv's python (``make test-onedl``, part of ``make test``):

    .venv-onedl/bin/python -m pytest tests/onedl <the reused upstream test files: Makefile ONEDL_TESTS>

In any other environment (the upstream venv's ``pytest tests``) nothing here is collected.
tests/conftest.py (fixtures, thread count, tests/ on sys.path) applies here too.
"""
import importlib.metadata

import pytest


def onedl_installed() -> bool:
    try:
        importlib.metadata.distribution('onedl-mmengine')
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


collect_ignore_glob = [] if onedl_installed() else ['test_*.py']


@pytest.fixture(scope='session')
def tiny_synthetic(tmp_path_factory):
    """A small copy of the built-in synthetic set (16 train / 8 val images, 160x160, seed 0)."""
    from ghost_backbones.apps.datasets import make_synthetic
    root = str(tmp_path_factory.mktemp('tiny_synthetic'))
    make_synthetic(root, num_train=16, num_val=8, image_size=160, seed=0)
    return root
