# Data settings shared by the synthetic detection configs: the COCO-format half of the
# built-in dataset (python tools/data/make_synthetic.py --out data/synthetic), 160x160 images
# of three shape classes. Paths are relative to the working directory, as in mmdet.
# Everything sits in one dict, ``synthetic``, because mmengine refuses keys that two bases
# both define; a config takes what it needs with ``{{_base_.synthetic.<key>}}``.
synthetic = dict(
    num_classes=3,
    data_root='data/synthetic/coco/',
    metainfo=dict(classes=('circle', 'square', 'triangle'), palette=[(220, 60, 50), (50, 170, 60), (60, 90, 220)]),
    train_dataloader=dict(
        batch_size=8,
        num_workers=1,
        persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=None,
        dataset=dict(
            _delete_=True,
            type='CocoDataset',
            data_root='data/synthetic/coco/',
            metainfo=dict(classes=('circle', 'square', 'triangle'),
                          palette=[(220, 60, 50), (50, 170, 60), (60, 90, 220)]),
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=4),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='Resize', scale=(160, 160), keep_ratio=False),
                dict(type='RandomFlip', prob=0.5),
                dict(type='PhotoMetricDistortion', brightness_delta=24, contrast_range=(0.7, 1.3),
                     saturation_range=(0.7, 1.3), hue_delta=4),
                dict(type='PackDetInputs')
            ])),
    val_dataloader=dict(
        batch_size=8,
        num_workers=1,
        persistent_workers=True,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            _delete_=True,
            type='CocoDataset',
            data_root='data/synthetic/coco/',
            metainfo=dict(classes=('circle', 'square', 'triangle'),
                          palette=[(220, 60, 50), (50, 170, 60), (60, 90, 220)]),
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img='val/'),
            test_mode=True,
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='Resize', scale=(160, 160), keep_ratio=False),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs',
                     meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
            ])),
    evaluator=dict(_delete_=True, type='CocoMetric', metric='bbox', format_only=False,
                   ann_file='data/synthetic/coco/annotations/instances_val.json'),
    env_cfg=dict(cudnn_benchmark=False),
    default_hooks=dict(logger=dict(type='LoggerHook', interval=10),
                       checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2, save_last=True)),
    log_processor=dict(window_size=10),
)
