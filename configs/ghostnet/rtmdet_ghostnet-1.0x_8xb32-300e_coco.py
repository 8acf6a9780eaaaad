# RTMDet with a GhostNet 1.0x backbone on COCO 2017: mmdet's RTMDet-tiny (41.1 box AP with its
# ImageNet-pretrained CSPNeXt-tiny) with the backbone replaced; CSPNeXtPAFPN takes GhostNet's
# stride 8 / 16 / 32 maps (stages 4, 6, 9: 40, 112, 960 channels). Training recipe: mmdet's.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.0,
        out_indices=(4, 6, 9),  # strides 8 / 16 / 32: 40, 112, 960 channels
        norm_cfg=dict(type='SyncBN'),  # as RTMDet's neck and head; BN when single-process
        init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'),  # ImageNet (README, Weights)
    ),
    neck=dict(in_channels=[40, 112, 960]))
