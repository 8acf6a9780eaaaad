"""A user's config outside this repository inherits ours with ``ghost_backbones::`` as it
inherits mmdet's with ``mmdet::``, from the editable install and from a built wheel, and
mmdet's / mmseg's / mmpretrain's own tools train it (every config, from the editable install:
test_train_every_config.py); the model index describes every config."""
import glob
import importlib
import json
import os
import os.path as osp
import subprocess
import sys
import sysconfig

import pytest
import yaml

from ghost_backbones.apps.datasets import make_synthetic
from helpers import CONFIGS, ROOT

ALL_CONFIGS = sorted(osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, '*', '*.py'))
                     if not osp.basename(p).startswith('_'))

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
model = dict(backbone=dict(init_cfg=None))  # the config names timm/ghostnet_100.in1k: no download in the tests
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


def train_with_upstream_tools(python, package, config, work_dir, expected=None):
    """``<package>/.mim/tools/train.py`` (the upstream script, which reads the config before it imports
    anything of ours) in a subprocess; its log, which must show the one training iteration."""
    tools = osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim', 'tools')
    result = subprocess.run([python, osp.join(tools, 'train.py'), config, '--work-dir', work_dir],
                            capture_output=True, text=True, cwd=osp.dirname(config))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    expected = expected or ('Epoch(train) [1][1/1]' if package == 'mmdet' else 'Iter(train) [1/1]')
    assert expected in log, log[-2000:]
    return log


def import_location(python, module):
    code = f'import {module}, os.path as osp; print(osp.realpath(osp.dirname({module}.__file__)))'
    return subprocess.run([python, '-c', code], capture_output=True, text=True, check=True, cwd='/').stdout.strip()


def datasets_of(dataset: dict):
    """A dataset config and those it wraps (RepeatDataset, ConcatDataset, MultiImageMixDataset)."""
    yield dataset
    for inner in [dataset['dataset']] if 'dataset' in dataset else dataset.get('datasets', []):
        yield from datasets_of(inner)


def lazy(dataset: dict) -> dict:
    """The dataset config with ``lazy_init`` on every level: built, pipeline and all, without reading annotations."""
    dataset = dict(dataset, lazy_init=True)
    if 'dataset' in dataset:
        dataset['dataset'] = lazy(dataset['dataset'])
    if 'datasets' in dataset:
        dataset['datasets'] = [lazy(inner) for inner in dataset['datasets']]
    return dataset


def scaffold(dataset: dict) -> None:
    """Annotation files (COCO: one image, no objects) and image folders where the dataset looks (relative to
    the working directory): what mmseg's VOC dataset checks at construction and mmdet's MultiImageMixDataset
    reads (it indexes its dataset at once)."""
    for inner in datasets_of(dataset):
        root = inner.get('data_root') or ''
        prefixes = inner.get('data_prefix') or {}
        for prefix in prefixes.values() if isinstance(prefixes, dict) else [prefixes]:
            os.makedirs(osp.join(root, prefix), exist_ok=True)
        if inner.get('ann_file'):
            path = osp.join(root, inner['ann_file'])
            os.makedirs(osp.dirname(path) or '.', exist_ok=True)
            with open(path, 'w') as f:
                f.write(json.dumps(dict(images=[dict(id=1, file_name='1.jpg', width=64, height=64)], annotations=[],
                                   categories=[])) if path.endswith('.json') else '')


def typed_dicts(value, path='cfg'):
    """(path, dict) for every dict with a ``type`` in a config."""
    if isinstance(value, dict):
        if 'type' in value:
            yield path, value
        for key, item in value.items():
            yield from typed_dicts(item, f'{path}.{key}')
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from typed_dicts(item, f'{path}[{index}]')


@pytest.mark.parametrize('relative', ALL_CONFIGS)
def test_every_config_inherited_builds_with_the_upstream_registries(relative, tmp_path, monkeypatch):
    """``_base_ = 'ghost_backbones::<config>'`` in a folder of its own: the model, the datasets (wrappers,
    pipelines) and the custom hooks build as the Runner builds them, with mmengine's root registries in the
    config's default scope. mmengine 0.10.7 tagged every typed dict of such a base ``_scope_='ghost_backbones'``,
    where none of mmdet's / mmseg's / mmpretrain's types is found (12 of 23 configs failed)."""
    from mmengine.config import Config
    from mmengine.registry import DATASETS, HOOKS, MODELS, DefaultScope
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'user.py').write_text(f'_base_ = {"ghost_backbones::" + relative!r}\n')
    cfg = Config.fromfile(str(tmp_path / 'user.py'))  # imports custom_imports (ghost_backbones), as the tools do
    assert cfg.default_scope in ('mmdet', 'mmseg', 'mmpretrain')
    scopes = {path: d['_scope_'] for path, d in typed_dicts(cfg.to_dict()) if d.get('_scope_') is not None}
    assert scopes and set(scopes.values()) == {cfg.default_scope}, scopes
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        assert type(model.backbone).__name__ in ('GhostNet', 'MobileNetV2', 'CSPNeXt', 'CSPDarknet')
        for split in ('train', 'val', 'test'):
            dataset = cfg[f'{split}_dataloader'].dataset
            scaffold(dataset)
            built = DATASETS.build(lazy(dataset))
            while hasattr(built, 'dataset') or hasattr(built, 'datasets'):  # the wrapped dataset
                built = built.dataset if hasattr(built, 'dataset') else built.datasets[0]
            assert len(built.pipeline.transforms) > 1, split
        for hook in cfg.get('custom_hooks', []):
            HOOKS.build({k: v for k, v in hook.items() if k != 'priority'})  # the Runner takes the priority


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


@pytest.mark.slow
def test_the_wheel_ships_what_mim_reads(user_configs, wheel_environment, tmp_path):
    """``.mim/tools/train.py`` and ``test.py`` are in the wheel: ``mim train / test ghost_backbones``
    run them; and mim lists and searches the installed wheel (its metafiles' ``Input Size`` are strings)."""
    python, site = wheel_environment
    tools = osp.join(site, 'ghost_backbones', '.mim', 'tools')
    assert osp.isfile(osp.join(tools, 'train.py')) and osp.isfile(osp.join(tools, 'test.py'))
    assert not osp.islink(tools)  # a copy, not a link into this checkout
    mim = [python, '-c', 'from mim.cli import cli; cli()']
    listed = subprocess.run(mim + ['list'], capture_output=True, text=True, cwd='/')
    assert 'ghost-backbones' in listed.stdout.split(), listed.stdout + listed.stderr[-2000:]
    found = subprocess.run(mim + ['search', 'ghost_backbones'], capture_output=True, text=True, cwd='/')
    assert 'config id: fpn_ghostnet-1.0x_synthetic-160' in found.stdout, found.stdout + found.stderr[-2000:]
    work_dir = str(tmp_path / 'work')
    trained = subprocess.run(mim + ['train', 'ghost_backbones', user_configs['mmdet'], '--work-dir', work_dir],
                             capture_output=True, text=True, cwd=str(tmp_path))
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert osp.join(tools, 'train.py') in trained.stdout and 'Epoch(train) [1][1/1]' in trained.stdout + trained.stderr
    tested = subprocess.run(mim + ['test', 'ghost_backbones', user_configs['mmdet'], '--checkpoint',
                                   osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir],
                            capture_output=True, text=True, cwd=str(tmp_path))
    assert tested.returncode == 0 and 'coco/bbox_mAP' in tested.stdout + tested.stderr, tested.stderr[-3000:]


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
    for model in index.models:  # what mim search and mmengine's inferencers read
        height, width = model.metadata.data['Input Size'].split('x')
        assert int(height) > 0 and int(width) > 0, model.name
    for folder in ('ghostnet', 'synthetic'):
        with open(osp.join(ROOT, 'configs', folder, 'metafile.yml')) as f:
            assert all('Weights' in model for model in yaml.safe_load(f)['Models'])


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
