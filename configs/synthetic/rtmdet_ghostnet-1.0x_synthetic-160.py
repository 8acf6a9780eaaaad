# RTMDet-GhostNet 1.0x on the built-in synthetic shapes, 160x160, on CPU in minutes. Inherits the
# real COCO config and changes data, image size (RTMDet's pipelines at 160) and schedule.
_base_ = ['../ghostnet/rtmdet_ghostnet-1.0x_8xb32-300e_coco.py', './_synthetic_coco.py']

img_scale = (160, 160)
max_epochs = 30
stage2_epochs = 5
model = dict(
    backbone=dict(init_cfg=None),  # from scratch, no download (the real config starts from ImageNet weights)
    bbox_head=dict(num_classes={{_base_.synthetic.num_classes}}))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20, random_pop=False),
    dict(type='RandomResize', scale=(320, 320), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=img_scale, ratio_range=(1.0, 1.0), max_cached_images=10, random_pop=False,
         pad_val=(114, 114, 114), prob=0.5),
    dict(type='PackDetInputs')
]
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True, pin_memory=False,
    dataset=dict(data_root={{_base_.synthetic.data_root}}, metainfo={{_base_.synthetic.metainfo}},
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(data_root={{_base_.synthetic.data_root}}, metainfo={{_base_.synthetic.metainfo}},
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = {{_base_.synthetic.evaluator}}
test_evaluator = val_evaluator
env_cfg = {{_base_.synthetic.env_cfg}}
default_hooks = {{_base_.synthetic.default_hooks}}
log_processor = {{_base_.synthetic.log_processor}}
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs, dynamic_intervals=[])
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=0.004 * 0.05, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True)
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - stage2_epochs, switch_pipeline=train_pipeline_stage2)
]
randomness = dict(seed=0)  # reproducible CPU runs
