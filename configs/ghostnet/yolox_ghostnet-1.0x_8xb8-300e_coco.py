# YOLOX with a GhostNet 1.0x backbone on COCO 2017: mmdet's YOLOX-tiny (32.0 box AP) with the
# backbone replaced; YOLOXPAFPN takes GhostNet's stride 8 / 16 / 32 maps (stages 4, 6, 9: 40,
# 112, 960 channels). Training recipe: mmdet's (mosaic, random affine, 416 test size).
_base_ = 'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py'

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.0,
        out_indices=(4, 6, 9),  # strides 8 / 16 / 32: 40, 112, 960 channels
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),  # YOLOX's BN settings
        # from scratch as mmdet's YOLOX; ImageNet weights instead (README, Weights):
        # init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'),
    ),
    neck=dict(in_channels=[40, 112, 960]))
