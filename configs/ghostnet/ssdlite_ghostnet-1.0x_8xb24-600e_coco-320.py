# SSDLite with a GhostNet 1.0x backbone on COCO 2017, 320x320, trained from scratch: the
# counterpart of mmdet's ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py (21.3 mAP).
# Runs from this repository's tools/train.py and from mmdet's own tools/train.py.
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.0,
        out_indices=(6, 9),  # stride 16 (112 ch) and stride 32 (960 ch)
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03),
        # from scratch as mmdet's counterpart; ImageNet weights instead (README, Weights):
        # init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'),
    ),
    neck=dict(in_channels=(112, 960), out_channels=(112, 960, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(112, 960, 512, 256, 256, 128)))
