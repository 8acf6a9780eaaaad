# SSD300 with a GhostNet 1.3x backbone on COCO 2017 (a published GhostNet-SSD300 reaches
# 24.3 mAP). The backbone gives the stride 8 / 16 / 32 maps (38, 19 and 10 cells at 300x300),
# the neck adds 5, 3 and 1: the six SSD300 levels. BN backbone: no L2 norm, ImageNet std.
_base_ = 'mmdet::ssd/ssd300_coco.py'

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='GhostNet',
        arch='v1',
        widen_factor=1.3,
        out_indices=(4, 6, 9),  # 52, 144, 1248 channels at 1.3x
        # from scratch: no v1 1.3x ImageNet weights are published (timm's ghostnet_130 is untrained); with a file
        # of your own: init_cfg=dict(type='Pretrained', checkpoint='checkpoints/ghostnet_130.pth'),
    ),
    neck=dict(
        in_channels=(52, 144, 1248),
        out_channels=(52, 144, 1248, 512, 256, 256),
        level_strides=(2, 2, 1),
        level_paddings=(1, 1, 0),
        l2_norm_scale=None),
    bbox_head=dict(in_channels=(52, 144, 1248, 512, 256, 256)))

optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay=4e-5))
