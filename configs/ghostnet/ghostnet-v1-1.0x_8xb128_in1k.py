# GhostNet 1.0x, ImageNet-1k classification with mmpretrain (its own tools/train.py, test.py).
# The head is timm's / the official classifier exactly: global average pool -> conv_head (a 1x1
# conv to 1280 = a linear layer on the pooled vector) -> ReLU -> dropout 0.2 -> linear, i.e.
# mmpretrain's StackedLinearClsHead with mid_channels=[1280]. A whole timm / official checkpoint
# converts with `python tools/convert_weights.py --to mmpretrain SRC DST` and gives timm's logits.
# Recipe: SGD, cosine decay, label smoothing 0.1, dropout 0.2, weight decay 4e-5, batch 1024 on
# 8 GPUs x 128, MobileNetV3's augmentation (mmpretrain's imagenet_bs128_mbv3 pipeline).
# Our choices where that leaves a value open: lr 0.4 (0.1 per 256 images), 5 warm-up epochs,
# 300 epochs. Published anchor: GhostNet 1.0x 73.9 top-1 (CVPR 2020 paper).
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs128_mbv3.py', 'mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['ghost_backbones'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='GhostNet', arch='v1', widen_factor=1.0, out_indices=(9,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='StackedLinearClsHead',
        num_classes=1000,
        in_channels=960,
        mid_channels=[1280],
        dropout_rate=0.2,
        act_cfg=dict(type='ReLU'),
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)))

max_epochs = 300
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.4, momentum=0.9, weight_decay=4e-5, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 5, by_epoch=True, begin=5, end=max_epochs, eta_min=1e-5)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
