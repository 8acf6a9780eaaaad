# YOLOv3-GhostNet 1.0x on the built-in synthetic shapes, 160x160, on CPU in minutes.
# Inherits the real COCO config and changes only data, image size and schedule.
_base_ = ['../ghostnet/yolov3_ghostnet-1.0x_8xb24-320-300e_coco.py', './_synthetic_coco.py']

train_dataloader = {{_base_.synthetic.train_dataloader}}
val_dataloader = {{_base_.synthetic.val_dataloader}}
test_dataloader = val_dataloader
# for the tools that read ``test_pipeline``: the test loader's, not the COCO base's (320x320)
test_pipeline = {{_base_.synthetic.val_dataloader.dataset.pipeline}}
val_evaluator = {{_base_.synthetic.evaluator}}
test_evaluator = val_evaluator
env_cfg = {{_base_.synthetic.env_cfg}}
default_hooks = {{_base_.synthetic.default_hooks}}
log_processor = {{_base_.synthetic.log_processor}}

max_epochs = 30
# The 320x320 anchors, halved.
model = dict(
    backbone=dict(init_cfg=None),  # from scratch, no download (the real config starts from ImageNet weights)
    bbox_head=dict(
        num_classes={{_base_.synthetic.num_classes}},
        anchor_generator=dict(base_sizes=[[(110, 62), (64, 111), (132, 133)],
                                          [(18, 44), (51, 48), (30, 85)],
                                          [(5, 8), (12, 18), (36, 21)]])))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs, end=max_epochs, by_epoch=True, eta_min=0)
]
optim_wrapper = dict(optimizer=dict(lr=0.003))
randomness = dict(seed=0)  # reproducible CPU runs (the tests' thresholds were measured with it)
