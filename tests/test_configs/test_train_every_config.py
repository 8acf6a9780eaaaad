"""Every config in configs/ (detection, segmentation, classification; real and synthetic), inherited
with ``_base_ = 'ghost_backbones::<config>'`` by a config in a folder of its own, trains one iteration
with the upstream project's own ``tools/train.py`` (shipped in mmdet's / mmseg's / mmpretrain's wheels,
under ``.mim/tools``; classification: mmpretrain's), from the editable install (issue 24).

The user config points the training data at a tiny synthetic set (one batch of one or two images: one
iteration of one epoch), starts the backbone from scratch
(``init_cfg=None``: the real configs name ``timm/ghostnet_100.in1k``, not downloadable here) and has no
validation or test loop. To keep it fast, the configs of one upstream project train one after the
other in one Python process, each through the upstream ``train.py`` run as ``__main__`` with its own
``sys.argv`` (the way ``python train.py CONFIG --work-dir DIR`` runs it); the result of each is
recorded and asserted per config."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

import pytest

from ghost_backbones.apps.datasets import CLASSES, make_synthetic, make_synthetic_classification
from helpers import CONFIGS, ROOT

ALL_CONFIGS = sorted(osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, '*', '*.py'))
                     if not osp.basename(p).startswith('_'))
PROJECTS = ('mmdet', 'mmseg', 'mmpretrain')

# Runs in the subprocess: each config through the upstream train.py as __main__, then what it wrote.
DRIVER = r'''
import glob, json, os, os.path as osp, runpy, sys, time, traceback
import torch
torch.set_num_threads(2)
script, jobs, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
results = {}
for name, config, work_dir in jobs:
    start = time.perf_counter()
    record = {}
    sys.argv = [script, config, '--work-dir', work_dir]
    try:
        runpy.run_path(script, run_name='__main__')
        record['error'] = None
    except BaseException:  # SystemExit too: the next config still runs
        record['error'] = traceback.format_exc()[-3000:]
    record['seconds'] = time.perf_counter() - start
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        checkpoint = torch.load(open(last).read().strip(), map_location='cpu', weights_only=True)
        record.update(checkpoint=osp.basename(open(last).read().strip()), epoch=checkpoint['meta']['epoch'],
                      iter=checkpoint['meta']['iter'])
    for path in glob.glob(osp.join(work_dir, '*.pth')):  # read: 24 checkpoints kept would take 1.5 GB of disk
        os.remove(path)
    record['log'] = [line.split(' - INFO - ', 1)[-1].strip() for path in glob.glob(osp.join(work_dir, '*', '*.log'))
                     for line in open(path) if '(train)' in line]
    module = sys.modules.get('ghost_backbones')
    record['ghost_backbones'] = module and osp.realpath(osp.dirname(module.__file__))
    results[name] = record
    json.dump(results, open(out, 'w'))
'''


def innermost(dataset: dict) -> dict:
    """The dataset a wrapper (RepeatDataset, MultiImageMixDataset, ConcatDataset) finally reads."""
    while 'dataset' in dataset or 'datasets' in dataset:
        dataset = dataset['dataset'] if 'dataset' in dataset else dataset['datasets'][0]
    return dataset


def detection_dataset(dataset: dict, root: str, images: int) -> dict:
    """Override of a detector's train dataset: the wrappers kept (RepeatDataset once), the COCO set at its centre
    reading the first ``images`` of the tiny synthetic set."""
    if 'dataset' in dataset:
        override = dict(dataset=detection_dataset(dataset['dataset'], root, images))
        if 'times' in dataset:
            override['times'] = 1
        return override
    return dict(data_root=root, ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                metainfo=dict(classes=CLASSES), indices=images)


def user_config(relative: str, data: str):
    """The upstream project of a config, and the text of a user's config inheriting
    ``ghost_backbones::<relative>`` that trains one iteration on ``data``."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIGS, relative), import_custom_modules=False)
    project = cfg.default_scope  # mmdet, mmseg or mmpretrain
    train = cfg.train_dataloader.to_dict()
    model = 'model = dict(backbone=dict(init_cfg=None))\n'
    # two images in the batch where BatchNorm meets one value per image (SSDLite's normalised extra layers end
    # at 1x1, DeepLabV3's image pooling); one elsewhere (RetinaNet's 800x1333 doubled costs half this test)
    if project == 'mmdet':
        neck = cfg.model.get('neck') or {}
        batch = 2 if neck.get('type') == 'SSDNeck' and neck.get('norm_cfg') else 1
        dataset = detection_dataset(train['dataset'], osp.join(data, 'coco') + '/', batch)
        model = 'model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=3))\n'
    elif project == 'mmseg':
        batch, dataset = 2, dict(_delete_=True, type='PascalVOCDataset', data_root=osp.join(data, 'voc', 'VOC2012'),
                                 ann_file='ImageSets/Segmentation/train.txt', indices=2,
                                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                                 pipeline=innermost(train['dataset'])['pipeline'])
    else:
        batch, dataset = 2, dict(_delete_=True, type='CustomDataset', data_root=osp.join(data, 'cls'),
                                 data_prefix='train', indices=2, pipeline=innermost(train['dataset'])['pipeline'])
    schedule = 'max_iters=1' if 'max_iters' in cfg.train_cfg else 'max_epochs=1'
    text = (f'_base_ = {"ghost_backbones::" + relative!r}\n'
            f'experiment_name = {osp.splitext(osp.basename(relative))[0]!r}\n'
            'visualizer = dict(name=experiment_name)  # one per run (a named instance outlives its Runner)\n' + model +
            f'train_dataloader = dict(batch_size={batch}, num_workers=0, persistent_workers=False,\n'
            f'                        dataset={dataset!r})\n'
            f'train_cfg = dict({schedule})\n'
            'val_dataloader = val_cfg = val_evaluator = None\n'
            'test_dataloader = test_cfg = test_evaluator = None\n')
    return project, text


def upstream_train_script(project: str) -> str:
    import importlib
    return osp.join(osp.dirname(importlib.import_module(project).__file__), '.mim', 'tools', 'train.py')


@pytest.fixture(scope='module')
def trained_once(tmp_path_factory):
    """Every config trained one iteration, one process per upstream project: {config: what its run did}."""
    folder = tmp_path_factory.mktemp('every_config')
    data = str(folder / 'data')
    make_synthetic(data, num_train=2, num_val=1, image_size=160, seed=4)
    make_synthetic_classification(data, num_train=1, num_val=1)
    jobs = {project: [] for project in PROJECTS}
    for relative in ALL_CONFIGS:
        name = osp.splitext(osp.basename(relative))[0]
        path = folder / 'user' / name / f'my_{name}.py'
        path.parent.mkdir(parents=True)
        project, text = user_config(relative, data)
        path.write_text(text)
        jobs[project].append([relative, str(path), str(path.parent / 'work')])
    (folder / 'driver.py').write_text(DRIVER)
    records, seconds = {}, {}
    env = dict(os.environ, HF_HUB_OFFLINE='1')  # a hub name left in a config fails at once instead of downloading
    for project, project_jobs in jobs.items():
        (folder / f'{project}.json').write_text(json.dumps(project_jobs))
        out = folder / f'{project}_results.json'
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(folder / 'driver.py'), upstream_train_script(project),
                                 str(folder / f'{project}.json'), str(out)],
                                capture_output=True, text=True, cwd=str(folder), env=env)
        seconds[project] = time.perf_counter() - start
        assert out.is_file(), f'exit code {result.returncode}\n' + result.stdout[-2000:] + result.stderr[-3000:]
        records.update(json.loads(out.read_text()))
    print('\none training iteration of every config, upstream tools/train.py: ' +
          ', '.join(f'{p} {len(jobs[p])} configs {s:.0f} s' for p, s in seconds.items()))
    return records


@pytest.mark.slow
@pytest.mark.parametrize('relative', ALL_CONFIGS)
def test_every_config_inherited_trains_with_the_upstream_tools(trained_once, relative):
    record = trained_once[relative]
    assert record['error'] is None, record['error']
    assert record['ghost_backbones'] == osp.join(ROOT, 'ghost_backbones')  # the editable install
    assert record['iter'] == 1 and record['checkpoint'] in ('epoch_1.pth', 'iter_1.pth'), record
    iteration, = record['log']  # the one progress line of the one iteration, with its loss
    assert iteration.startswith(('Epoch(train) [1][1/1]', 'Iter(train) [1/1]')), iteration
    loss = float(re.search(r'\bloss: ([\d.]+)', iteration).group(1))
    assert 0 < loss < 1e4, iteration
