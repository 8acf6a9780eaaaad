# Data settings shared by the synthetic segmentation configs: the Pascal-VOC-format half of
# the built-in dataset (python tools/data/make_synthetic.py --out data/synthetic), 160x160
# images, classes background + three shapes, outlines labelled 255 (ignored, as in VOC).
# mmseg's PascalVOCDataset is tied to VOC's 21 class names, so the synthetic set is read with
# mmseg's BaseSegDataset and its own class names; the file layout is VOC's.
# One dict, ``synthetic``, because mmengine refuses keys that two bases both define.
synthetic = dict(
    num_classes=4,
    crop_size=(160, 160),
    train_dataloader=dict(
        batch_size=8,
        num_workers=1,
        persistent_workers=True,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            _delete_=True,
            type='BaseSegDataset',
            data_root='data/synthetic/voc/VOC2012',
            metainfo=dict(classes=('background', 'circle', 'square', 'triangle'),
                          palette=[[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]),
            img_suffix='.jpg',
            seg_map_suffix='.png',
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/train.txt',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations'),
                dict(type='RandomFlip', prob=0.5),
                dict(type='PhotoMetricDistortion', brightness_delta=24, contrast_range=(0.7, 1.3),
                     saturation_range=(0.7, 1.3), hue_delta=4),
                dict(type='PackSegInputs')
            ])),
    val_dataloader=dict(
        batch_size=1,
        num_workers=1,
        persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            _delete_=True,
            type='BaseSegDataset',
            data_root='data/synthetic/voc/VOC2012',
            metainfo=dict(classes=('background', 'circle', 'square', 'triangle'),
                          palette=[[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]),
            img_suffix='.jpg',
            seg_map_suffix='.png',
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/val.txt',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')
            ])),
    env_cfg=dict(cudnn_benchmark=False),
    log_processor=dict(window_size=10),
)
