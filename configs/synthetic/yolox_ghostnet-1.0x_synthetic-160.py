# YOLOX-GhostNet 1.0x on the built-in synthetic shapes, 160x160, on CPU in minutes. Inherits the
# real COCO config and changes data, image size (YOLOX's pipelines at 160) and schedule.
_base_ = ['../ghostnet/yolox_ghostnet-1.0x_8xb8-300e_coco.py', './_synthetic_coco.py']

img_scale = (160, 160)
max_epochs = 30
num_last_epochs = 5
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchSyncRandomResize', random_size_range=(128, 192), size_divisor=32, interval=10)]),
    bbox_head=dict(num_classes={{_base_.synthetic.num_classes}}))
train_pipeline = [
    dict(type='Mosaic', img_scale=img_scale, pad_val=114.0),
    dict(type='RandomAffine', scaling_ratio_range=(0.5, 1.5), border=(-img_scale[0] // 2, -img_scale[1] // 2)),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(
        pipeline=train_pipeline,
        dataset=dict(data_root={{_base_.synthetic.data_root}}, metainfo={{_base_.synthetic.metainfo}},
                     ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                     filter_cfg=dict(filter_empty_gt=False, min_size=4))))
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
    dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=2, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=2, T_max=max_epochs - num_last_epochs - 2,
         end=max_epochs - num_last_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type='ConstantLR', by_epoch=True, factor=1, begin=max_epochs - num_last_epochs, end=max_epochs)
]
custom_hooks = [
    dict(type='YOLOXModeSwitchHook', num_last_epochs=num_last_epochs, priority=48),
    dict(type='SyncNormHook', priority=48),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49)
]
randomness = dict(seed=0)  # reproducible CPU runs
