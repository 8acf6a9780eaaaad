"""On OneDL: the synthetic SSDLite and Semantic FPN train a few iterations and are scored through this package's
tools and through OneDL's own tools/train.py / tools/test.py (installed as mmdet/.mim/tools, mmseg/.mim/tools),
and a run resumes from a checkpoint that OneDL's Runner wrote as it writes it (HistoryBuffers, numpy scalars)."""
import importlib
import os.path as osp
import sys
import zipfile

import pytest

from ghost_backbones.apps.main_job import (data_options, det_schedule_options, run_command, seg_schedule_options,
                                           train_and_test)
from ghost_backbones.apps.runtime import last_checkpoint
from helpers import DET_CONFIG, SEG_CONFIG

DET_OPTIONS = det_schedule_options(1, 2)  # 16 images at batch 8: 2 iterations
SEG_OPTIONS = seg_schedule_options(2)
CASES = [('mmdet', DET_CONFIG, DET_OPTIONS, 'bbox_mAP_copypaste'), ('mmseg', SEG_CONFIG, SEG_OPTIONS, 'mIoU')]
IDS = ['ssdlite', 'fpn']


def onedl_tool(package: str, name: str) -> str:
    path = osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim', 'tools', f'{name}.py')
    assert osp.isfile(path), f'OneDL ships no {path}'
    return path


@pytest.mark.parametrize('package, config, options, score', CASES, ids=IDS)
def test_the_package_tools_train_and_score(tiny_synthetic, tmp_path, package, config, options, score):
    result = train_and_test(config, str(tmp_path), data_options(package, tiny_synthetic) + options)
    assert score in result['log'] and 'Falling back' not in result['log']
    assert any(key.endswith('mAP' if package == 'mmdet' else 'mIoU') for key in result['metrics']), result['metrics']


# OneDL's tools/train.py, with MessageHub's state written as OneDL's mmengine writes it (the plugin otherwise
# writes plain data: compat fix 1)
AS_ONEDL_WRITES = r'''
import runpy, sys
import ghost_backbones
from mmengine.logging import MessageHub
MessageHub.state_dict = MessageHub.state_dict.__wrapped__
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_onedl_tools_train_and_score_fpn(tiny_synthetic, tmp_path):
    """OneDL's own tools: the config's custom_imports line registers GhostNet and applies the fixes."""
    work_dir = str(tmp_path)
    options = ['--cfg-options', *data_options('mmseg', tiny_synthetic), *SEG_OPTIONS]
    run_command([sys.executable, onedl_tool('mmseg', 'train'), SEG_CONFIG, '--work-dir', work_dir, *options],
                osp.join(work_dir, 'train.log'))
    log = run_command([sys.executable, onedl_tool('mmseg', 'test'), SEG_CONFIG, last_checkpoint(work_dir),
                       '--work-dir', work_dir, *options], osp.join(work_dir, 'test.log'))
    assert 'mIoU' in log and 'Falling back' not in log


def test_onedl_tools_train_score_and_resume_ssdlite_from_a_checkpoint_onedl_wrote(tiny_synthetic, tmp_path):
    """OneDL's mmdet tools/train.py writes the checkpoint as OneDL's Runner writes it (HistoryBuffers, numpy
    scalars), tools/test.py scores it, and tools/train.py --resume goes on from it to the second epoch."""
    train, test = onedl_tool('mmdet', 'train'), onedl_tool('mmdet', 'test')
    work_dir = str(tmp_path)
    options = data_options('mmdet', tiny_synthetic)
    run_command([sys.executable, '-c', AS_ONEDL_WRITES, train, DET_CONFIG, '--work-dir', work_dir,
                 '--cfg-options', *options, *DET_OPTIONS], osp.join(work_dir, 'first.log'))
    written = last_checkpoint(work_dir)
    with zipfile.ZipFile(written) as archive:
        pickle = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    assert b'HistoryBuffer' in pickle and b'numpy' in pickle  # objects, as OneDL writes them
    log = run_command([sys.executable, test, DET_CONFIG, written, '--work-dir', work_dir, '--cfg-options', *options],
                      osp.join(work_dir, 'test.log'))
    assert 'bbox_mAP_copypaste' in log and 'Falling back' not in log
    # two epochs in all (the schedule's length is the config's; the state is the checkpoint's)
    log = run_command([sys.executable, train, DET_CONFIG, '--work-dir', work_dir, '--resume',
                       '--cfg-options', *options, 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2'],
                      osp.join(work_dir, 'resumed.log'))
    assert f'Load checkpoint from {written}' in log and 'resumed epoch: 1, iter: 2' in log, log[-3000:]
    assert 'Falling back' not in log and 'Epoch(train) [2]' in log
    assert last_checkpoint(work_dir).endswith('epoch_2.pth')
