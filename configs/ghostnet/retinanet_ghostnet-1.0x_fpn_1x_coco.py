# RetinaNet + FPN with a GhostNet 1.0x backbone on COCO 2017, 1x schedule: the setting of the
# GhostNet paper's COCO table, which starts from ImageNet weights: timm's, named in init_cfg (mmdet
# also sets frozen_stages=1, norm_eval=True for its ImageNet ResNet).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.0,
        out_indices=(2, 4, 6, 9),  # strides 4 / 8 / 16 / 32: 24, 40, 112, 960 channels
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'),  # ImageNet (README, Weights)
    ),
    neck=dict(in_channels=[24, 40, 112, 960]))
