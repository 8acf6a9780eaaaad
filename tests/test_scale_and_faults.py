"""Distributed training on CPU (torchrun + gloo), resume after SIGKILL, clear errors on bad data."""
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ghost_backbones import runtime
from ghost_backbones.datasets import make_synthetic
from ghost_backbones.datasets.checks import DatasetError
from ghost_backbones.main_job import DET_CONFIG, ROOT, SEG_CONFIG, data_options, det_schedule_options
from ghost_backbones.weights import CheckpointError

TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')
# No random augmentation, no worker processes: a run is a function of the seed and schedule.
DETERMINISTIC_CONFIG = """
_base_ = {base!r}
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=False), dict(type='PackDetInputs')]))
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
randomness = dict(seed=0, deterministic=True)
"""


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('small'))
    make_synthetic(root, num_train=32, num_val=16, image_size=160, seed=1)
    return root


def copy_data(small_data, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(small_data, root)
    return root


def det_cfg(data_root, *extra):
    return runtime.load_config(DET_CONFIG, cfg_options=runtime_options(data_options('mmdet', data_root), *extra))


def runtime_options(options, *extra):
    from mmengine.config import DictAction
    parsed = {}
    for option in list(options) + list(extra):
        key, value = option.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def edit_annotations(data_root, edit):
    path = osp.join(data_root, 'coco', 'annotations', 'instances_train.json')
    with open(path) as f:
        coco = json.load(f)
    edit(coco)
    with open(path, 'w') as f:
        json.dump(coco, f)


# ---------------------------------------------------------------------------- bad inputs

def test_missing_image_is_named(small_data, tmp_path):
    root = copy_data(small_data, tmp_path)
    os.remove(osp.join(root, 'coco', 'train', 'train_000007.jpg'))
    with pytest.raises(DatasetError, match=r'do not exist:\s+.*train_000007\.jpg'):
        runtime.check_inputs(det_cfg(root))


@pytest.mark.parametrize('bbox, message', [([150., 10., 40., 20.], 'lies outside the 160x160 image'),
                                           ([10., 10., -5., 20.], 'non-positive width/height'),
                                           ([10., 10., 0., 20.], 'non-positive width/height')])
def test_bad_box_is_named(small_data, tmp_path, bbox, message):
    root = copy_data(small_data, tmp_path)

    def edit(coco):
        coco['annotations'][3]['bbox'] = bbox
    edit_annotations(root, edit)
    with pytest.raises(DatasetError) as info:
        runtime.check_inputs(det_cfg(root))
    assert message in str(info.value) and 'instances_train.json' in str(info.value)
    assert 'annotation id 4 (' in str(info.value)


def test_unknown_category_is_named(small_data, tmp_path):
    root = copy_data(small_data, tmp_path)

    def edit(coco):
        coco['annotations'][0]['category_id'] = 99
    edit_annotations(root, edit)
    with pytest.raises(DatasetError, match='unknown category_id 99'):
        runtime.check_inputs(det_cfg(root))


def test_mask_label_outside_the_classes_is_named(small_data, tmp_path):
    root = copy_data(small_data, tmp_path)
    mask_path = osp.join(root, 'voc', 'VOC2012', 'SegmentationClass', 'train_000002.png')
    mask = Image.open(mask_path)
    labels = np.asarray(mask).copy()
    labels[:5, :5] = 7
    bad = Image.fromarray(labels, mode='P')
    bad.putpalette(mask.getpalette())
    bad.save(mask_path)
    cfg = runtime.load_config(SEG_CONFIG, cfg_options=runtime_options(data_options('mmseg', root)))
    with pytest.raises(DatasetError) as info:
        runtime.check_inputs(cfg)
    assert 'train_000002.png' in str(info.value) and 'labels [7] outside 0..3' in str(info.value)


def test_num_classes_disagreeing_with_the_dataset(small_data):
    with pytest.raises(DatasetError, match='num_classes=5 in the model head disagrees with the 3 classes'):
        runtime.check_inputs(det_cfg(small_data, 'model.bbox_head.num_classes=5'))


@pytest.mark.parametrize('content', [b'garbage', b''])
def test_unreadable_checkpoint_for_load_from_and_resume(small_data, tmp_path, content):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match='bad.pth is not a readable PyTorch checkpoint'):
        runtime.check_inputs(det_cfg(small_data, f'load_from={bad}'))
    cfg = det_cfg(small_data, f'work_dir={tmp_path}')
    (tmp_path / 'last_checkpoint').write_text(str(bad))
    runtime.set_resume(cfg, 'auto')
    with pytest.raises(CheckpointError, match='bad.pth'):
        runtime.check_inputs(cfg)


def test_unreadable_init_cfg_checkpoint(tmp_path):
    from ghost_backbones import GhostNet
    bad = tmp_path / 'imagenet.pth'
    bad.write_bytes(b'\x80\x02}q\x00')  # a pickle cut short
    with pytest.raises(CheckpointError, match='imagenet.pth'):
        GhostNet(init_cfg=dict(type='Pretrained', checkpoint=str(bad))).init_weights()


def test_train_tool_stops_before_writing_anything(small_data, tmp_path):
    root = copy_data(small_data, tmp_path)
    edit_annotations(root, lambda coco: coco['annotations'][1].update(category_id=42))
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'epoch_1.pth').write_bytes(b'precious')
    result = subprocess.run([sys.executable, TRAIN, DET_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                             *data_options('mmdet', root)], capture_output=True, text=True)
    assert result.returncode != 0
    assert 'DatasetError' in result.stderr and 'unknown category_id 42' in result.stderr
    assert sorted(os.listdir(work_dir)) == ['epoch_1.pth'] and (work_dir / 'epoch_1.pth').read_bytes() == b'precious'


# ---------------------------------------------------------------------------- distributed, resume

def run(command, log, env=None, timeout=600):
    with open(log, 'w') as f:
        return subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout)


def one_thread_env():
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return env


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(small_data, tmp_path):
    """tools/dist_train.sh and tools/dist_test.sh (torchrun) with 2 CPU processes."""
    work_dir = str(tmp_path / 'ddp')
    options = data_options('mmdet', small_data) + det_schedule_options(2, 4) + \
        ['train_dataloader.batch_size=4', 'default_hooks.checkpoint.interval=2']
    env = dict(one_thread_env(), PYTHON=sys.executable, PORT='29517')
    result = run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), DET_CONFIG, '2', '--work-dir', work_dir,
                  '--cfg-options', *options], tmp_path / 'ddp.log', env=env)
    log = (tmp_path / 'ddp.log').read_text()
    assert result.returncode == 0, log[-3000:]
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    # 32 images, batch 4, two ranks: 4 iterations an epoch on each rank (8 in one process)
    assert 'Epoch(train) [2][4/4]' in log
    assert sorted(p for p in os.listdir(work_dir) if p.endswith('.pth')) == ['epoch_2.pth']
    checkpoint = osp.join(work_dir, 'epoch_2.pth')

    def copypaste(path):
        return [line for line in path.read_text().splitlines() if 'bbox_mAP_copypaste' in line][-1].split()[-6:]

    # the validation after training (results gathered from both ranks), tools/dist_test.sh on
    # 2 processes and tools/test.py in one process give the same COCO numbers
    result = run(['bash', osp.join(ROOT, 'tools', 'dist_test.sh'), DET_CONFIG, checkpoint, '2', '--work-dir',
                  str(tmp_path / 'dist_test'), '--cfg-options', *options], tmp_path / 'dist_test.log', env=env)
    assert result.returncode == 0, (tmp_path / 'dist_test.log').read_text()[-3000:]
    single = run([sys.executable, TEST, DET_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'single'),
                  '--cfg-options', *options], tmp_path / 'single.log')
    assert single.returncode == 0, (tmp_path / 'single.log').read_text()[-3000:]
    assert copypaste(tmp_path / 'ddp.log') == copypaste(tmp_path / 'dist_test.log') == \
        copypaste(tmp_path / 'single.log')


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(small_data, tmp_path):
    epochs = 4
    config = tmp_path / 'deterministic.py'
    config.write_text(DETERMINISTIC_CONFIG.format(base=DET_CONFIG))
    options = data_options('mmdet', small_data) + det_schedule_options(epochs, 4) + \
        ['train_dataloader.batch_size=8', 'default_hooks.checkpoint.interval=1',
         'default_hooks.checkpoint.max_keep_ckpts=10', f'train_cfg.val_interval={epochs + 1}']
    reference_dir, killed_dir = str(tmp_path / 'reference'), str(tmp_path / 'killed')
    assert run([sys.executable, TRAIN, str(config), '--work-dir', reference_dir, '--cfg-options', *options],
               tmp_path / 'reference.log').returncode == 0

    with open(tmp_path / 'killed.log', 'w') as log:
        process = subprocess.Popen([sys.executable, TRAIN, str(config), '--work-dir', killed_dir, '--cfg-options',
                                    *options], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not osp.exists(osp.join(killed_dir, 'epoch_1.pth')) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let the checkpoint file be complete (mmengine writes it, then 'last_checkpoint')
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = sorted(p for p in os.listdir(killed_dir) if p.endswith('.pth'))
    assert f'epoch_{epochs}.pth' not in done, 'the run finished before it was killed: nothing was tested'

    resumed = run([sys.executable, TRAIN, str(config), '--work-dir', killed_dir, '--resume', '--cfg-options', *options],
                  tmp_path / 'resumed.log')
    log = (tmp_path / 'resumed.log').read_text()
    assert resumed.returncode == 0, log[-3000:]
    assert 'resumed epoch: ' in log.lower() or 'Auto resumed from' in log
    assert f'Epoch(train) [{epochs}][4/4]' in log and 'Epoch(train) [1][' not in log

    reference = torch.load(osp.join(reference_dir, f'epoch_{epochs}.pth'), map_location='cpu', weights_only=False)
    final = torch.load(osp.join(killed_dir, f'epoch_{epochs}.pth'), map_location='cpu', weights_only=False)
    assert final['meta']['iter'] == reference['meta']['iter'] == epochs * 4
    for key, value in reference['state_dict'].items():
        torch.testing.assert_close(final['state_dict'][key], value, atol=1e-5, rtol=1e-4, msg=key)


def test_amp_without_an_accelerator_is_a_clear_error(small_data):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA: --amp is valid here')
    with pytest.raises(ValueError, match='--amp needs a CUDA'):
        runtime.enable_amp(det_cfg(small_data))
