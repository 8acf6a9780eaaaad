"""The configs that ship with the package (``ghost_backbones/.mim/configs``: a link to the
repository's ``configs/`` in a checkout, a copy in a wheel), found the way mmengine finds
``ghost_backbones::`` configs."""
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS_DIR = osp.join(PACKAGE_DIR, '.mim', 'configs')


def config_file(relative: str) -> str:
    """The path of a shipped config, e.g. ``config_file('synthetic/ssdlite_ghostnet-1.0x_synthetic-160.py')``."""
    path = osp.join(CONFIGS_DIR, relative)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no config {relative!r} under {CONFIGS_DIR}')
    return path
