# mmdet's own YOLOX-tiny (CSPDarknet backbone, from scratch) with exactly the data and schedule
# of yolox_ghostnet-1.0x_synthetic-160.py: the reference of the README's side-by-side table.
_base_ = './yolox_ghostnet-1.0x_synthetic-160.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='CSPDarknet',
        deepen_factor=0.33,
        widen_factor=0.375,
        out_indices=(2, 3, 4),
        use_depthwise=False,
        spp_kernal_sizes=(5, 9, 13),
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='Swish')),
    neck=dict(in_channels=[96, 192, 384]))
