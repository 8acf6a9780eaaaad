# DeepLabV3 (ASPP) with a dilated GhostNet 1.0x (out_stride 8: the stride-16 and stride-32
# steps become dilation 2 and 4) on Pascal VOC 2012 aug, 512x512, 20k iterations: the
# counterpart of mmseg's deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py (76.2 mIoU with R-50).
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.0,
        out_indices=(6, 9),  # 112 and 960 channels, both at stride 8
        out_stride=8,
        norm_cfg=dict(type='SyncBN', requires_grad=True),  # as mmseg's heads; BN when single-process
        init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'),  # ImageNet (README, Weights)
    ),
    decode_head=dict(in_channels=960, in_index=1, channels=256),
    auxiliary_head=dict(in_channels=112, in_index=0, channels=128))
