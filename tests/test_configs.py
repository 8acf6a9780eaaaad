"""Every config builds its model, computes a finite loss that reaches the backbone, and predicts."""
import glob
import os.path as osp

import pytest
import torch

import ghost_backbones  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'ghostnet', '*.py')))
SYNTHETIC = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', 'synthetic', '*.py'))
                   if not osp.basename(p).startswith('_'))


def build(path):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    cfg = Config.fromfile(path)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        if cfg.default_scope == 'mmseg':
            cfg.model.data_preprocessor.size = (128, 128)
            from ghost_backbones.runtime import replace_sync_bn
            replace_sync_bn(cfg.model)  # single process on CPU, as mmengine's Runner does
        model = registry.build(cfg.model)
    return cfg, model


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


def check_loss_and_predict(cfg, model, data):
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


@pytest.mark.parametrize('path', CONFIGS + SYNTHETIC, ids=osp.basename)
def test_config_builds_trains_and_predicts(path):
    cfg, model = build(path)
    reference = 'mobilenetv2' in osp.basename(path)  # mmdet's own backbone, for comparison
    assert type(model.backbone).__name__ == ('MobileNetV2' if reference else 'GhostNet')
    assert 'ghost_backbones' in cfg.custom_imports['imports']
    if cfg.default_scope == 'mmdet':
        size = 300 if 'ssd300' in path else 160 if 'synthetic' in path else 256
        results = check_loss_and_predict(cfg, model, detection_batch(size, model.bbox_head.num_classes))
        assert results[0].pred_instances.bboxes.shape[1] == 4
    else:
        results = check_loss_and_predict(cfg, model, segmentation_batch(128, model.decode_head.num_classes))
        assert results[0].pred_sem_seg.data.shape[-2:] == (128, 128)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_backbone_channels_match_the_neck(path):
    """The channels the backbone returns are those its neck / head are configured for."""
    cfg, model = build(path)
    channels = model.backbone.out_channels
    neck = cfg.model.get('neck')
    if neck is not None and neck.type == 'YOLOV3Neck':
        assert list(neck.in_channels) == channels[::-1]
    elif neck is not None:
        assert list(neck.in_channels) == channels
    else:
        head = cfg.model.decode_head
        assert channels[head.in_index] == head.in_channels
        assert channels[cfg.model.auxiliary_head.in_index] == cfg.model.auxiliary_head.in_channels


def test_dilated_config_keeps_stride_8():
    cfg, model = build(osp.join(ROOT, 'configs', 'ghostnet', 'deeplabv3_ghostnet-1.0x-d8_4xb4-20k_voc12aug-512x512.py'))
    assert model.backbone.out_strides == [8, 8]
