"""What tools/train.py and tools/test.py do before the Runner starts (apps/runtime.py)."""
import pytest
import torch

from ghost_backbones.apps import runtime
from ghost_backbones.apps.datasets import make_synthetic
from ghost_backbones.checkpoint import CheckpointError
from helpers import det_cfg


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('small'))
    make_synthetic(root, num_train=8, num_val=4, image_size=64, seed=1)
    return root


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


@pytest.mark.parametrize('source', ['https://example.org/x.pth', 'open-mmlab://resnet50_caffe', 'openmmlab://x',
                                    'mmcls://x', 's3://bucket/x.pth', 'pavi://x', 'modelzoo://resnet50',
                                    'torchvision://resnet50', 'timm/ghostnet_100.in1k', 'hf-hub:timm/ghostnet_100.in1k'])
def test_the_pre_check_leaves_remote_checkpoints_to_the_runner(small_data, source):
    """Only local files are read ahead; the Runner reads the others (as data, see compat)."""
    assert not runtime.local_checkpoint(source)
    runtime.check_inputs(det_cfg(small_data, f'load_from={source}'))


def test_amp_without_an_accelerator_is_a_clear_error(small_data):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA: --amp is valid here')
    with pytest.raises(ValueError, match='--amp needs a CUDA'):
        runtime.enable_amp(det_cfg(small_data))
