# mmdet's own SSDLite-MobileNetV2 (the backbone, neck and head of mmdet's
# ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py) with exactly the data and schedule of
# ssdlite_ghostnet-1.0x_synthetic-160.py: the reference of the README's side-by-side table.
_base_ = './ssdlite_ghostnet-1.0x_synthetic-160.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(4, 7),
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
        init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    neck=dict(in_channels=(96, 1280), out_channels=(96, 1280, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(96, 1280, 512, 256, 256, 128)))
