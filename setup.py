"""ghost_backbones: the GhostNet family (v1, v2, v3) as an OpenMMLab backbone plugin.

mmcv is deliberately not in install_requires: it ships no wheels for current torch and is built
from source by ``tools/setup_env.sh`` (see README, "Set-up").
"""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'ghost_backbones', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='ghost_backbones',
    version=read_version(),
    description='GhostNet v1/v2/v3 backbones for mmdet, mmseg and other OpenMMLab projects',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['ghost_backbones', 'ghost_backbones.*']),
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.0',
        'mmengine>=0.10.0,<0.11',
        'mmdet>=3.3.0,<3.4',
        'mmsegmentation>=1.2.0,<1.3',
        'timm>=1.0',
        'pycocotools',
        'numpy',
    ],
    extras_require={'tests': ['pytest', 'onnx', 'onnxruntime', 'matplotlib']},
    license='Apache-2.0',
)
