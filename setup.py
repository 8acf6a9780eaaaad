"""ghost_backbones: the GhostNet family (v1, v2, v3) as an OpenMMLab backbone plugin.

Two things besides the package:

* ``ghost_backbones_startup`` and ``ghost_backbones_startup.pth``: mmcv's compiled-ops module on
  torchvision for mmcv-lite, and ``ghost_backbones::`` config inheritance (see that package). The
  ``.pth`` file goes to site-packages in the wheel and in editable installs, so that mmdet's and
  mmseg's own tools get both before they read a config.
* ``configs/``, ``tools/`` and ``model-index.yml`` ship inside the package as ``ghost_backbones/.mim/``
  (OpenMMLab's layout), so that ``_base_ = 'ghost_backbones::ghostnet/...'`` resolves in an
  installed wheel and ``mim train / test ghost_backbones CONFIG`` find ``.mim/tools/train.py`` /
  ``test.py``; in a checkout ``ghost_backbones/.mim`` holds links to them.

mmcv is not in install_requires: mmcv-lite 2.1.0 (default) or a compiled mmcv 2.1.0 is chosen by
``tools/setup_env.sh`` (see README, "Set-up").
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
PTH = 'ghost_backbones_startup.pth'


def read_version():
    namespace = {}
    with open(osp.join(HERE, 'ghost_backbones', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


class BuildPyWithPthAndConfigs(build_py):
    """Adds the ``.pth`` at the wheel's top level, ``configs/`` and ``tools/`` as ``ghost_backbones/.mim/``
    ``configs`` and ``tools`` (what mim reads), and the model index."""

    def run(self):
        super().run()
        self.copy_file(osp.join(HERE, PTH), osp.join(self.build_lib, PTH))
        if not self.editable_mode:  # (a checkout links ghost_backbones/.mim to these)
            mim = osp.join(self.build_lib, 'ghost_backbones', '.mim')
            for folder in ('configs', 'tools'):
                if osp.isdir(osp.join(mim, folder)):  # a rebuild: files removed since must not stay
                    shutil.rmtree(osp.join(mim, folder))
                shutil.copytree(osp.join(HERE, folder), osp.join(mim, folder),
                                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            self.copy_file(osp.join(HERE, 'model-index.yml'), osp.join(mim, 'model-index.yml'))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [osp.join(self.build_lib, PTH)]


cmdclass = {'build_py': BuildPyWithPthAndConfigs}
try:
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithPth(editable_wheel):
        """PEP 660 editable wheels carry only setuptools' own path hooks: add ours beside them.
        (Configs resolve from the checkout: ``ghost_backbones/.mim`` links to ``configs/``.)"""

        def _install_namespaces(self, installation_dir, pth_prefix):
            super()._install_namespaces(installation_dir, pth_prefix)
            shutil.copy(osp.join(HERE, PTH), os.fspath(installation_dir))

    cmdclass['editable_wheel'] = EditableWheelWithPth
except ImportError:  # setuptools < 64: legacy `setup.py develop`, no .pth hook
    pass


setup(
    name='ghost_backbones',
    version=read_version(),
    description='GhostNet v1/v2/v3 backbones for mmdet, mmseg, mmpretrain and other OpenMMLab projects',
    long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['ghost_backbones', 'ghost_backbones.*',
                                    'ghost_backbones_startup', 'ghost_backbones_startup.*']),
    python_requires='>=3.8',
    # No OpenMMLab distribution here: the same import names (mmengine, mmcv, mmdet, mmseg, mmpretrain)
    # come from upstream OpenMMLab or from the OneDL fork, under other distribution names; naming one
    # stack's would install it over the other's (as mmdet keeps them in its `mminstall` extra).
    # Choose the stack with an extra: ghost_backbones[openmmlab] / [onedl], or [mmdet] / [onedl-mmdet]...
    # mmcv is in no upstream extra (mmcv-lite or a compiled mmcv: tools/setup_env.sh, README "Set-up").
    install_requires=[
        # the checkpoint loader maps checkpoint names to its rebuilders with (object, 'module.name')
        # pairs in torch.serialization.safe_globals (pytorch/pytorch#142153, torch 2.6)
        'torch>=2.6',
        'torchvision',
        'timm>=1.0',
        'numpy',
    ],
    extras_require={
        # upstream OpenMMLab (mmengine 0.10.x, mmdet 3.3, mmsegmentation 1.2, mmpretrain 1.2)
        'openmmlab': ['mmengine>=0.10.0,<0.11'],
        'mmdet': ['mmengine>=0.10.0,<0.11', 'mmdet>=3.3.0,<3.4', 'pycocotools'],
        'mmseg': ['mmengine>=0.10.0,<0.11', 'mmsegmentation>=1.2.0,<1.3', 'ftfy', 'regex'],
        'mmpretrain': ['mmengine>=0.10.0,<0.11', 'mmpretrain>=1.2.0,<1.3'],
        # the OneDL fork (onedl-mmcv: its PyPI source or OneDL's CUDA builds, the same distribution)
        'onedl': ['onedl-mmengine>=0.10.8,<0.11', 'onedl-mmcv>=2.3.0,<2.4'],
        'onedl-mmdet': ['onedl-mmengine>=0.10.8,<0.11', 'onedl-mmcv>=2.3.0,<2.4',
                        'onedl-mmdetection>=3.4,<3.6', 'pycocotools'],
        'onedl-mmseg': ['onedl-mmengine>=0.10.8,<0.11', 'onedl-mmcv>=2.3.0,<2.4',
                        'onedl-mmsegmentation>=1.3,<1.5', 'ftfy', 'regex'],
        'onedl-mmpretrain': ['onedl-mmengine>=0.10.8,<0.11', 'onedl-mmcv>=2.3.0,<2.4', 'onedl-mmpretrain>=1.3,<1.4'],
        'deploy': ['onnx', 'onnxruntime'],
        'tests': ['pytest', 'onnx', 'onnxruntime', 'matplotlib'],
    },
    cmdclass=cmdclass,
    zip_safe=False,
    license='Apache-2.0',
)
