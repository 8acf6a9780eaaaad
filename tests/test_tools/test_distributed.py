"""Distributed training on CPU (torchrun + gloo, tools/dist_train.sh and dist_test.sh) and
resume after SIGKILL (tools/train.py --resume)."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from ghost_backbones.apps.datasets import make_synthetic
from ghost_backbones.apps.main_job import det_schedule_options
from helpers import DET_CONFIG, data_options, tool

TRAIN = tool('train.py')
TEST = tool('test.py')
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
    result = run(['bash', tool('dist_train.sh'), DET_CONFIG, '2', '--work-dir', work_dir,
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

    # tools/dist_test.sh on 2 processes and tools/test.py in one process give the same COCO numbers
    # (each process on one thread: oneDNN's results depend on the thread count, and an untrained
    # detector's AP on its last bits)
    result = run(['bash', tool('dist_test.sh'), DET_CONFIG, checkpoint, '2', '--work-dir',
                  str(tmp_path / 'dist_test'), '--cfg-options', *options], tmp_path / 'dist_test.log', env=env)
    assert result.returncode == 0, (tmp_path / 'dist_test.log').read_text()[-3000:]
    single = run([sys.executable, TEST, DET_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'single'),
                  '--cfg-options', *options], tmp_path / 'single.log', env=one_thread_env())
    assert single.returncode == 0, (tmp_path / 'single.log').read_text()[-3000:]
    assert copypaste(tmp_path / 'dist_test.log') == copypaste(tmp_path / 'single.log')
    # The validation at the end of training gathers both ranks' results too, but rank 1 validates
    # with its own BatchNorm statistics (DDP broadcasts rank 0's buffers only before a training
    # forward; the checkpoint holds rank 0's): close to the checkpoint's numbers, not equal.
    after_training = [float(v) for v in copypaste(tmp_path / 'ddp.log')]
    from_checkpoint = [float(v) for v in copypaste(tmp_path / 'single.log')]
    assert all(abs(a - b) <= 0.01 for a, b in zip(after_training, from_checkpoint)), (after_training, from_checkpoint)


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
        # mmengine's CheckpointHook writes 'last_checkpoint' once epoch_1.pth is complete
        deadline = time.time() + 300
        while not osp.exists(osp.join(killed_dir, 'last_checkpoint')) and time.time() < deadline:
            time.sleep(0.05)
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
