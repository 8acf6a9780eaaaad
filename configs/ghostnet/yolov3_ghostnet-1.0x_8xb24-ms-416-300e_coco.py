# YOLOv3 with a GhostNet 1.0x backbone on COCO 2017, multi-scale training, 416x416 test: the
# counterpart of mmdet's yolo/yolov3_mobilenetv2_8xb24-ms-416-300e_coco.py (23.9 mAP).
_base_ = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-ms-416-300e_coco.py'

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.0,
        out_indices=(4, 6, 9),  # strides 8 / 16 / 32: 40, 112, 960 channels
        init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'),  # ImageNet (README, Weights)
    ),
    neck=dict(in_channels=[960, 112, 40]))
