# RetinaNet-GhostNet 1.0x on the built-in synthetic shapes, 160x160, on CPU in minutes.
# Inherits the real COCO config and changes only data, image size, anchors and schedule.
_base_ = ['../ghostnet/retinanet_ghostnet-1.0x_fpn_1x_coco.py', './_synthetic_coco.py']

train_dataloader = {{_base_.synthetic.train_dataloader}}
val_dataloader = {{_base_.synthetic.val_dataloader}}
test_dataloader = val_dataloader
# for the tools that read ``test_pipeline``: the test loader's (an exact 160x160 resize), not the
# COCO base's (keep-ratio 1333x800)
test_pipeline = {{_base_.synthetic.val_dataloader.dataset.pipeline}}
val_evaluator = {{_base_.synthetic.evaluator}}
test_evaluator = val_evaluator
env_cfg = {{_base_.synthetic.env_cfg}}
default_hooks = {{_base_.synthetic.default_hooks}}
log_processor = {{_base_.synthetic.log_processor}}

max_epochs = 30
# Anchors halved (octave base scale 4 -> 2): 16-25 px at stride 8, 32-50 at 16, 64-101 at 32, the
# sizes of the synthetic shapes (19-80 px); the COCO ones start at 32 px.
model = dict(
    backbone=dict(init_cfg=None),  # from scratch, no download (the real config starts from ImageNet weights)
    bbox_head=dict(
        num_classes={{_base_.synthetic.num_classes}},
        anchor_generator=dict(octave_base_scale=2)))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True, eta_min=0)
]
# RetinaNet's SGD at lr 0.01 (batch 8 here, 16 in mmdet's), with gradient clipping for the start from scratch
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=35, norm_type=2))
randomness = dict(seed=0)  # reproducible CPU runs
