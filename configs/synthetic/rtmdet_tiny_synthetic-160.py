# mmdet's own RTMDet-tiny (CSPNeXt-tiny backbone, from scratch: no download) with exactly the
# data and schedule of rtmdet_ghostnet-1.0x_synthetic-160.py: the reference of the README's
# side-by-side table.
_base_ = './rtmdet_ghostnet-1.0x_synthetic-160.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='CSPNeXt',
        arch='P5',
        expand_ratio=0.5,
        deepen_factor=0.167,
        widen_factor=0.375,
        channel_attention=True,
        norm_cfg=dict(type='SyncBN'),
        act_cfg=dict(type='SiLU', inplace=True)),
    neck=dict(in_channels=[96, 192, 384]))
