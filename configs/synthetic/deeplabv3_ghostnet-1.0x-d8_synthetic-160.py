# DeepLabV3-GhostNet 1.0x (dilated, out_stride 8) on the built-in synthetic shapes, 160x160.
# Inherits the real VOC config and changes only data, image size and schedule.
_base_ = ['../ghostnet/deeplabv3_ghostnet-1.0x-d8_4xb4-20k_voc12aug-512x512.py', './_synthetic_voc.py']

max_iters = 600
model = dict(
    backbone=dict(init_cfg=None),  # from scratch, no download (the real config starts from ImageNet weights)
    data_preprocessor=dict(size={{_base_.synthetic.crop_size}}),
    decode_head=dict(num_classes={{_base_.synthetic.num_classes}}),
    auxiliary_head=dict(num_classes={{_base_.synthetic.num_classes}}))
train_dataloader = {{_base_.synthetic.train_dataloader}}
val_dataloader = {{_base_.synthetic.val_dataloader}}
test_dataloader = val_dataloader
# what mmseg's init_model / inference_model read: the test loader's pipeline, not the VOC base's
# (which resizes 160-px images to 2048x512, i.e. 512x512)
test_pipeline = {{_base_.synthetic.val_dataloader.dataset.pipeline}}
env_cfg = {{_base_.synthetic.env_cfg}}
log_processor = {{_base_.synthetic.log_processor}}
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=2, save_last=True))
randomness = dict(seed=0)  # reproducible CPU runs (the tests' thresholds were measured with it)
