# GhostNetV2 1.0x (DFC attention), ImageNet-1k classification with mmpretrain: the recipe of
# ghostnet-v1-1.0x_8xb128_in1k.py. timm's ghostnetv2_100 converts with
# `python tools/convert_weights.py --to mmpretrain`.
_base_ = './ghostnet-v1-1.0x_8xb128_in1k.py'

model = dict(backbone=dict(arch='v2'))
