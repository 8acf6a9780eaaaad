"""OpenMMLab's own client APIs and tools on our configs, called the way their documentation shows
(issue 24): mmseg's init_model / inference_model, mmengine's hub, mim."""
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from helpers import CONFIGS, SEG_CONFIG

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
