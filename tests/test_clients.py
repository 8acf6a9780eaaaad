"""OpenMMLab's own client APIs and tools on our configs, called the way their documentation shows
(issue 24): mmseg's init_model / inference_model, mmengine's hub, mim."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import CONFIGS, ROOT, SEG_CONFIG

MIM = osp.join(osp.dirname(sys.executable), 'mim')

SEG_CONFIGS = [SEG_CONFIG, osp.join(CONFIGS, 'synthetic', 'deeplabv3_ghostnet-1.0x-d8_synthetic-160.py')]


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    """Two 160x160 synthetic scenes (VOC layout)."""
    from ghost_backbones.apps.datasets import make_synthetic
    root = str(tmp_path_factory.mktemp('scenes'))
    make_synthetic(root, num_train=1, num_val=1, image_size=160, seed=7)
    return osp.join(root, 'voc', 'VOC2012')


@pytest.mark.parametrize('config', SEG_CONFIGS, ids=osp.basename)
def test_mmseg_init_model_infers_at_the_images_size(config, scenes):
    """mmseg's init_model + inference_model read ``cfg.test_pipeline``: a 160-px image is inferred at
    160x160, as by tools/test.py (the VOC base's test pipeline would make it 512x512)."""
    from mmseg.apis import inference_model, init_model
    model = init_model(config, device='cpu')  # untrained: the shape is the point here
    name = open(osp.join(scenes, 'ImageSets', 'Segmentation', 'val.txt')).read().split()[0]
    result = inference_model(model, osp.join(scenes, 'JPEGImages', name + '.jpg'))
    assert tuple(result.img_shape) == (160, 160) and tuple(result.ori_shape) == (160, 160)
    assert tuple(result.pred_sem_seg.shape) == (160, 160)


@pytest.mark.slow
def test_mmseg_inference_model_scores_like_tools_test(trained_fpn, synthetic):
    """The trained Semantic FPN through init_model + inference_model: the mIoU of its masks over the
    val images is tools/test.py's within 1 point (it was 20 points lower at the VOC base's scale)."""
    from mmseg.apis import inference_model, init_model

    from ghost_backbones.apps.benchmark import mean_iou
    voc = osp.join(synthetic, 'voc', 'VOC2012')
    names = open(osp.join(voc, 'ImageSets', 'Segmentation', 'val.txt')).read().split()
    model = init_model(SEG_CONFIG, trained_fpn['checkpoint'], device='cpu')
    results = inference_model(model, [osp.join(voc, 'JPEGImages', n + '.jpg') for n in names])
    pairs = [(r.pred_sem_seg.data[0].numpy(), np.asarray(Image.open(osp.join(voc, 'SegmentationClass', n + '.png'))))
             for r, n in zip(results, names)]
    ours, reference = mean_iou(pairs, num_classes=4), trained_fpn['metrics']['mIoU']
    print(f'\nmIoU: tools/test.py {reference:.2f}, mmseg inference_model {ours:.2f}')
    assert abs(ours - reference) <= 1.0


def mim(*args, cwd=None):
    """openmim's command line (the ``mim`` script of this environment); its output."""
    result = subprocess.run([MIM, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_mim_lists_and_searches_the_editable_install():
    """mim 0.3.9 looked for the package under site-packages (where a PEP 660 editable install puts
    only its metadata): ``mim list`` left it out, ``mim search`` failed; and it died on the metafiles'
    ``Input Size: [160, 160]``."""
    assert 'ghost-backbones' in mim('list').split()
    found = mim('search', 'ghost_backbones')
    assert 'config id: ssdlite_ghostnet-1.0x_synthetic-160' in found
    assert 'config id: ghostnet-v3-1.0x_8xb128_in1k' in found
    assert '160x160' in found and '800x1333' in found


@pytest.fixture(scope='module')
def tiny_detection_config(tmp_path_factory):
    """The synthetic SSDLite config pointed at a two-image set, one training iteration."""
    folder = tmp_path_factory.mktemp('mim')
    from ghost_backbones.apps.datasets import make_synthetic
    make_synthetic(str(folder / 'data'), num_train=2, num_val=1, image_size=160, seed=4)
    root = str(folder / 'data' / 'coco') + '/'
    config = folder / 'my_ssdlite.py'
    config.write_text(
        "_base_ = 'ghost_backbones::synthetic/ssdlite_ghostnet-1.0x_synthetic-160.py'\n"
        f"data_root = {root!r}\n"
        "loader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))\n"
        "train_dataloader = dict(loader, batch_size=2)\n"
        "val_dataloader = dict(loader, batch_size=1)\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        "test_evaluator = val_evaluator\n"
        "train_cfg = dict(max_epochs=1, val_interval=10)\n")
    return str(config)


@pytest.mark.slow
def test_mim_trains_and_tests_with_the_packages_tools(tiny_detection_config, tmp_path):
    """``mim train ghost_backbones CONFIG`` / ``mim test ghost_backbones CONFIG --checkpoint`` run
    ``ghost_backbones/.mim/tools/train.py`` / ``test.py`` (missing before: mim had no script to run)."""
    work_dir = tmp_path / 'work'
    log = mim('train', 'ghost_backbones', tiny_detection_config, '--work-dir', work_dir, cwd=str(tmp_path))
    assert osp.join(ROOT, 'ghost_backbones', '.mim', 'tools', 'train.py') in log
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file(), log[-2000:]
    log = mim('test', 'ghost_backbones', tiny_detection_config, '--checkpoint', checkpoint, '--work-dir', work_dir,
              cwd=str(tmp_path))
    assert 'coco/bbox_mAP' in log, log[-2000:]
