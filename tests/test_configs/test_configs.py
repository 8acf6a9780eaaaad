"""Every config builds its model, computes a finite loss that reaches the backbone, and predicts."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import ghost_backbones  # noqa: F401
from ghost_backbones.apps.deploy import build_from_config
from helpers import CONFIGS

REAL = sorted(glob.glob(osp.join(CONFIGS, 'ghostnet', '*.py')))
# the side-by-side references: mmdet's own detectors on our synthetic data and schedule
REFERENCE_BACKBONES = {'ssdlite_mobilenetv2_synthetic-160.py': 'MobileNetV2', 'rtmdet_tiny_synthetic-160.py': 'CSPNeXt',
                       'yolox_tiny_synthetic-160.py': 'CSPDarknet'}
SYNTHETIC = sorted(p for p in glob.glob(osp.join(CONFIGS, 'synthetic', '*.py')) if not osp.basename(p).startswith('_'))


def build(path):
    """The config and its model (segmenters pad to 128x128 here, the size of the test batch)."""
    cfg = Config.fromfile(path)
    options = {'model.data_preprocessor.size': (128, 128)} if cfg.default_scope == 'mmseg' else None
    return cfg, build_from_config(path, cfg_options=options)


def detection_batch(size, num_classes):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 255, (3, size, size), generator=gen, dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             scale_factor=(1., 1.), batch_input_shape=(size, size)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[size * 0.1, size * 0.2, size * 0.6, size * 0.7],
                                 [size * 0.5, size * 0.5, size * 0.9, size * 0.95]]),
            labels=torch.tensor([0, num_classes - 1]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def segmentation_batch(size, num_classes):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 255, (3, size, size), generator=gen, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size)))
        labels = torch.randint(0, num_classes, (1, size, size), generator=gen)
        labels[:, :4] = 255
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def classification_batch(size, num_classes):
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 255, (3, size, size), generator=gen, dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(label) for label in (0, num_classes - 1)]
    return dict(inputs=inputs, data_samples=samples)


def check_loss_and_predict(cfg, model, data):
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('iter', 0)  # as a Runner does (YOLOX's batch resize reads it)
    model.train()
    batch = model.data_preprocessor(data, training=True)
    losses = model(**batch, mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and total > 0
    total.backward()
    grad = next(model.backbone.parameters()).grad
    assert grad is not None and grad.abs().sum() > 0, 'the loss does not reach the backbone'
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, training=False), mode='predict')
    assert len(results) == len(data['inputs'])
    return results


@pytest.mark.parametrize('path', REAL + SYNTHETIC, ids=osp.basename)
def test_config_builds_trains_and_predicts(path):
    cfg, model = build(path)
    assert type(model.backbone).__name__ == REFERENCE_BACKBONES.get(osp.basename(path), 'GhostNet')
    assert 'ghost_backbones' in cfg.custom_imports['imports']
    if cfg.default_scope == 'mmdet':
        size = 300 if 'ssd300' in path else 160 if 'synthetic' in path else 256
        results = check_loss_and_predict(cfg, model, detection_batch(size, model.bbox_head.num_classes))
        assert results[0].pred_instances.bboxes.shape[1] == 4
    elif cfg.default_scope == 'mmseg':
        results = check_loss_and_predict(cfg, model, segmentation_batch(128, model.decode_head.num_classes))
        assert results[0].pred_sem_seg.data.shape[-2:] == (128, 128)
    else:
        num_classes = model.head.num_classes
        results = check_loss_and_predict(cfg, model, classification_batch(64, num_classes))
        assert results[0].pred_score.shape == (num_classes,)


@pytest.mark.parametrize('path', REAL, ids=osp.basename)
def test_backbone_channels_match_the_neck(path):
    """The channels the backbone returns are those its neck / head are configured for."""
    cfg, model = build(path)
    channels = model.backbone.out_channels
    neck = cfg.model.get('neck')
    if neck is not None and neck.type == 'YOLOV3Neck':
        assert list(neck.in_channels) == channels[::-1]
    elif cfg.default_scope == 'mmpretrain':
        assert cfg.model.head.in_channels == channels[-1]
    elif neck is not None:
        assert list(neck.in_channels) == channels
    else:
        head = cfg.model.decode_head
        assert channels[head.in_index] == head.in_channels
        assert channels[cfg.model.auxiliary_head.in_index] == cfg.model.auxiliary_head.in_channels


def test_dilated_config_keeps_stride_8():
    cfg, model = build(osp.join(CONFIGS, 'ghostnet', 'deeplabv3_ghostnet-1.0x-d8_4xb4-20k_voc12aug-512x512.py'))
    assert model.backbone.out_strides == [8, 8]


def without_default_scope(value, scope):
    """``value`` without the ``_scope_`` keys that only repeat the default scope (mmengine adds them to
    the typed dicts of ``pkg::`` bases; they change nothing where ``pkg`` is the default scope)."""
    if isinstance(value, dict):
        return {k: without_default_scope(v, scope) for k, v in value.items() if not (k == '_scope_' and v == scope)}
    if isinstance(value, (list, tuple)):
        return [without_default_scope(v, scope) for v in value]
    return value


@pytest.mark.parametrize('path', REAL + SYNTHETIC, ids=osp.basename)
def test_test_pipeline_is_the_test_dataloaders(path):
    """mmseg's init_model / inference_model build their pipeline from ``cfg.test_pipeline``, the test
    loop and mmdet's / mmpretrain's inferencers from the test loader's (through dataset wrappers, as
    mmdet's get_test_pipeline_cfg): the two must be one, or inference runs at another scale."""
    from mmdet.utils import get_test_pipeline_cfg
    cfg = Config.fromfile(path)
    assert 'test_pipeline' in cfg
    assert without_default_scope(cfg.test_pipeline, cfg.default_scope) == \
        without_default_scope(get_test_pipeline_cfg(cfg), cfg.default_scope)
