# GhostNetV3 1.0x (re-parameterisable branches), ImageNet-1k classification with mmpretrain:
# the recipe of ghostnet-v1-1.0x_8xb128_in1k.py (the v3 paper adds knowledge distillation from a
# large teacher, not configured here). timm's ghostnetv3_100 and the official v3 release convert
# with `python tools/convert_weights.py --to mmpretrain`.
_base_ = './ghostnet-v1-1.0x_8xb128_in1k.py'

model = dict(backbone=dict(arch='v3'))
