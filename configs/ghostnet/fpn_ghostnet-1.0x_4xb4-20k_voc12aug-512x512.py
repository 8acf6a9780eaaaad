# Semantic FPN (mmseg's FPN neck + FPNHead) with a GhostNet 1.0x backbone on Pascal VOC 2012
# aug, 512x512, 20k iterations. SyncBN from mmseg's base becomes BN in single-process runs.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_20k.py'
]

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.0,
        out_indices=(2, 4, 6, 9),  # strides 4 / 8 / 16 / 32: 24, 40, 112, 960 channels
        norm_cfg=dict(type='SyncBN', requires_grad=True),  # as mmseg's heads; BN when single-process
        init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'),  # ImageNet (README, Weights)
    ),
    neck=dict(in_channels=[24, 40, 112, 960]),
    decode_head=dict(num_classes=21))
