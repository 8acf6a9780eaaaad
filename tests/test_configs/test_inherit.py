"""A user's config outside this repository inherits ours with ``ghost_backbones::`` as it
inherits mmdet's with ``mmdet::``, from the editable install and from a built wheel, and
mmdet's / mmseg's own tools train it; the model index describes every config."""
import importlib
import os
import os.path as osp
import subprocess
import sys
import sysconfig

import pytest
import yaml

from ghost_backbones.apps.datasets import make_synthetic
from helpers import ROOT

USER_DETECTOR = '''
_base_ = 'ghost_backbones::ghostnet/ssdlite_ghostnet-1.0x_8xb24-600e_coco-320.py'
data_root = {root!r}
metainfo = dict(classes=('circle', 'square', 'triangle'))
model = dict(bbox_head=dict(num_classes=3))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(times=1, dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'))))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=10)
'''

USER_SEGMENTER = '''
_base_ = 'ghost_backbones::ghostnet/fpn_ghostnet-1.0x_4xb4-20k_voc12aug-512x512.py'
data_root = {root!r}
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    _delete_=True, type='PascalVOCDataset', data_root=data_root, ann_file='ImageSets/Segmentation/train.txt',
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'), pipeline={{{{_base_.train_pipeline}}}}))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(
    data_root=data_root, ann_file='ImageSets/Segmentation/val.txt'))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=1, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=1))
'''


@pytest.fixture(scope='module')
def user_configs(tmp_path_factory):
    """Two configs in a folder of their own, on a tiny synthetic set."""
    folder = tmp_path_factory.mktemp('user')
    make_synthetic(str(folder / 'data'), num_train=2, num_val=1, image_size=160, seed=4)
    det, seg = folder / 'my_ssdlite.py', folder / 'my_fpn.py'
    det.write_text(USER_DETECTOR.format(root=str(folder / 'data' / 'coco') + '/'))
    seg.write_text(USER_SEGMENTER.format(root=str(folder / 'data' / 'voc' / 'VOC2012')))
    return {'mmdet': str(det), 'mmseg': str(seg)}


def train_with_upstream_tools(python, package, config, work_dir):
    tools = osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim', 'tools')
    result = subprocess.run([python, osp.join(tools, 'train.py'), config, '--work-dir', work_dir],
                            capture_output=True, text=True, cwd=osp.dirname(config))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert ('Epoch(train) [1][1/1]' if package == 'mmdet' else 'Iter(train) [1/1]') in log, log[-2000:]
    return log


def import_location(python, module):
    code = f'import {module}, os.path as osp; print(osp.realpath(osp.dirname({module}.__file__)))'
    return subprocess.run([python, '-c', code], capture_output=True, text=True, check=True, cwd='/').stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize('package', ['mmdet', 'mmseg'])
def test_inherit_with_the_editable_install(user_configs, package, tmp_path):
    assert import_location(sys.executable, 'ghost_backbones') == osp.join(ROOT, 'ghost_backbones')
    train_with_upstream_tools(sys.executable, package, user_configs[package], str(tmp_path / 'work'))


@pytest.fixture(scope='module')
def wheel_environment(tmp_path_factory):
    """A fresh environment holding only the wheel of this package; the other packages are
    reachable, as data, through a path entry (their own .pth hooks, this checkout's editable
    install among them, do not run there)."""
    folder = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
                    str(folder / 'dist'), ROOT], check=True, capture_output=True)
    wheel = next((folder / 'dist').glob('ghost_backbones-*.whl'))
    environment = folder / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(environment)], check=True)
    python = str(environment / 'bin' / 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', site, str(wheel)],
                   check=True, capture_output=True)
    with open(osp.join(site, 'dependencies.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    return python, site


@pytest.mark.slow
@pytest.mark.parametrize('package', ['mmdet', 'mmseg'])
def test_inherit_with_a_built_wheel(user_configs, wheel_environment, package, tmp_path):
    python, site = wheel_environment
    assert import_location(python, 'ghost_backbones') == osp.realpath(osp.join(site, 'ghost_backbones'))
    configs = osp.join(site, 'ghost_backbones', '.mim', 'configs')
    assert osp.isfile(osp.join(configs, 'ghostnet', 'ssdlite_ghostnet-1.0x_8xb24-600e_coco-320.py'))
    assert not osp.islink(configs)  # a copy, not a link into this checkout
    assert osp.isfile(osp.join(site, 'ghost_backbones_startup.pth'))
    train_with_upstream_tools(python, package, user_configs[package], str(tmp_path / 'work'))


def test_the_model_index_describes_every_config():
    """model-index.yml imports the metafiles; each real and synthetic config is an entry whose
    config exists; modelindex (what mim uses) reads it."""
    import modelindex
    index = modelindex.load(osp.join(ROOT, 'model-index.yml'))
    names = {model.name for model in index.models}
    configs = {osp.splitext(osp.basename(p))[0] for folder in ('ghostnet', 'synthetic')
               for p in os.listdir(osp.join(ROOT, 'configs', folder)) if p.endswith('.py') and not p.startswith('_')}
    assert configs <= names, sorted(configs - names)
    with open(osp.join(ROOT, 'configs', 'ghostnet', 'metafile.yml')) as f:
        for model in yaml.safe_load(f)['Models']:
            assert osp.isfile(osp.join(ROOT, model['Config'])), model['Config']
            assert model['Metadata']['Parameters'] > 0 and model['Metadata']['FLOPs'] > 0


@pytest.mark.slow
def test_model_index_counts_are_those_of_model_info():
    """Parameters and FLOPs in the metafiles are what tools/analysis/model_info.py counts now."""
    from ghost_backbones.apps.metafile import ENTRIES, SYNTHETIC_ENTRIES, count
    for folder, entries in (('ghostnet', ENTRIES), ('synthetic', SYNTHETIC_ENTRIES)):
        with open(osp.join(ROOT, 'configs', folder, 'metafile.yml')) as f:
            written = {m['Config']: m['Metadata'] for m in yaml.safe_load(f)['Models']}
        for entry in entries:
            counts = count(entry)
            assert written[f'configs/{entry.config}']['Parameters'] == counts['params'], entry.config
            assert written[f'configs/{entry.config}']['FLOPs'] == counts['flops'], entry.config
