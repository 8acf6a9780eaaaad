# Semantic FPN + GhostNet 1.0x on Pascal VOC 2012 aug, 40k iterations.
_base_ = './fpn_ghostnet-1.0x_4xb4-20k_voc12aug-512x512.py'

param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=40000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000))
