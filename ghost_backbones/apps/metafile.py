"""OpenMMLab's model index for the configs (``model-index.yml`` importing
``configs/ghostnet/metafile.yml`` and ``configs/synthetic/metafile.yml``): what mim and mmengine
read about ``ghost_backbones::`` configs. Parameters and FLOPs are counted from the configs
(:func:`ghost_backbones.apps.analysis.config_info`); results are those measured on the
built-in synthetic data (none of the real-data configs was trained here: their published
anchors are given as notes).

What the readers need (issue 24): ``Input Size`` is a string, ``HEIGHTxWIDTH`` (mim 0.3.9's
``search`` lower-cases list items, and dies on numbers); every model has a ``Weights`` key, because
mmengine 0.10.7's inferencers read it unconditionally (``BaseInferencer._load_model_from_metafile``,
mmengine/infer/infer.py line 390). No checkpoint of ours is published, so it is ``null``: a model
named from the index is built with random weights (mmengine warns so) unless ``weights=`` is given,
and ``mim search`` shows no weight."""
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Tuple

import yaml

from .analysis import config_info
from .configs import CONFIGS_DIR

COLLECTION = {
    'Name': 'GhostNet',
    'Metadata': {'Architecture': ['Ghost Module', 'DFC Attention', 'Structural Re-parameterization']},
    'Paper': {'URL': 'https://arxiv.org/abs/1911.11907', 'Title': 'GhostNet: More Features from Cheap Operations'},
    'Code': {'URL': 'ghost_backbones/models/ghostnet.py'},
}


class Entry(NamedTuple):
    """One config in the model index."""
    config: str                  # relative to configs/
    task: str
    dataset: str
    size: Tuple[int, int]        # (height, width) that FLOPs are counted at
    note: str = ''
    metrics: Optional[Dict[str, float]] = None
    weights: Optional[str] = None  # URL or path of a published checkpoint (none yet)


SYNTHETIC = 'Synthetic shapes (ghost_backbones, 2-core CPU)'
ENTRIES = [
    Entry('ghostnet/ssdlite_ghostnet-1.0x_8xb24-600e_coco-320.py', 'Object Detection', 'COCO', (320, 320),
          'counterpart of mmdet SSDLite-MobileNetV2 (21.3 box AP); PaddleDetection SSDLite-GhostNet 23.3'),
    Entry('ghostnet/ssd300_ghostnet-1.3x_8xb8-24e_coco.py', 'Object Detection', 'COCO', (300, 300),
          'a published GhostNet-SSD300 reaches 24.3 box AP'),
    Entry('ghostnet/yolov3_ghostnet-1.0x_8xb24-320-300e_coco.py', 'Object Detection', 'COCO', (320, 320),
          'counterpart of mmdet YOLOv3-MobileNetV2 320 (22.2 box AP)'),
    Entry('ghostnet/yolov3_ghostnet-1.0x_8xb24-ms-416-300e_coco.py', 'Object Detection', 'COCO', (416, 416),
          'counterpart of mmdet YOLOv3-MobileNetV2 416 (23.9 box AP)'),
    Entry('ghostnet/retinanet_ghostnet-1.0x_fpn_1x_coco.py', 'Object Detection', 'COCO', (800, 1333),
          'the GhostNet paper\'s COCO setting (RetinaNet, ImageNet-pretrained backbone)'),
    Entry('ghostnet/rtmdet_ghostnet-1.0x_8xb32-300e_coco.py', 'Object Detection', 'COCO', (640, 640),
          'counterpart of mmdet RTMDet-tiny (41.1 box AP)'),
    Entry('ghostnet/yolox_ghostnet-1.0x_8xb8-300e_coco.py', 'Object Detection', 'COCO', (416, 416),
          'counterpart of mmdet YOLOX-tiny (32.0 box AP)'),
    Entry('ghostnet/fpn_ghostnet-1.0x_4xb4-20k_voc12aug-512x512.py', 'Semantic Segmentation', 'Pascal VOC 2012 aug',
          (512, 512), 'mmseg R-50-D8 anchors on VOC aug: FCN 67.1, PSPNet 76.8, DeepLabV3 76.2 mIoU'),
    Entry('ghostnet/fpn_ghostnet-1.0x_4xb4-40k_voc12aug-512x512.py', 'Semantic Segmentation', 'Pascal VOC 2012 aug',
          (512, 512), 'the 20k schedule, twice as long'),
    Entry('ghostnet/deeplabv3_ghostnet-1.0x-d8_4xb4-20k_voc12aug-512x512.py', 'Semantic Segmentation',
          'Pascal VOC 2012 aug', (512, 512), 'counterpart of mmseg DeepLabV3 R-50-D8 (76.2 mIoU)'),
    Entry('ghostnet/ghostnet-v1-1.0x_8xb128_in1k.py', 'Image Classification', 'ImageNet-1k', (224, 224),
          'GhostNet 1.0x: 73.9 top-1 in the paper'),
    Entry('ghostnet/ghostnet-v2-1.0x_8xb128_in1k.py', 'Image Classification', 'ImageNet-1k', (224, 224),
          'timm ghostnetv2_100 weights convert to this config'),
    Entry('ghostnet/ghostnet-v3-1.0x_8xb128_in1k.py', 'Image Classification', 'ImageNet-1k', (224, 224),
          'timm ghostnetv3_100 weights convert to this config'),
]


def model_entry(entry: Entry, counts: Optional[Dict[str, int]]) -> dict:
    name = osp.splitext(osp.basename(entry.config))[0]
    model = {'Name': name, 'In Collection': COLLECTION['Name'], 'Config': f'configs/{entry.config}',
             'Metadata': {'Training Data': entry.dataset, 'Input Size': input_size(entry.size)}}
    if counts:
        model['Metadata'].update(Parameters=counts['params'], FLOPs=counts['flops'])
    # every entry names its task (mmpretrain's ModelHub takes the Image Classification ones: the startup hook);
    # Metrics only where measured
    model['Results'] = [{'Task': entry.task, 'Dataset': entry.dataset, 'Metrics': dict(entry.metrics or {})}]
    if entry.note:
        model['Notes'] = entry.note
    model['Weights'] = entry.weights
    return model


def input_size(size: Tuple[int, int]) -> str:
    """(height, width) as the model index writes it: ``'160x160'``, ``'800x1333'``."""
    return f'{size[0]}x{size[1]}'


def count(entry: Entry) -> Dict[str, int]:
    info = config_info(osp.join(CONFIGS_DIR, entry.config), entry.size)
    return {'params': int(round(info['params_m'] * 1e6)), 'flops': int(round(info['gflops'] * 1e9))}


def metafile(entries: List[Entry], with_counts: bool = True) -> dict:
    return {'Collections': [COLLECTION],
            'Models': [model_entry(e, count(e) if with_counts else None) for e in entries]}


def write(path: str, entries: List[Entry]) -> str:
    with open(path, 'w') as f:
        f.write('# Written by tools/analysis/make_metafile.py: parameters and FLOPs counted from the configs\n'
                '# (FLOPs: multiply-adds of one image of Input Size, height x width, up to the raw head outputs).\n'
                '# Weights: null: no checkpoint of these configs is published.\n')
        yaml.safe_dump(metafile(entries), f, sort_keys=False, width=120)
    return path

# Measured on this project's 2-core CPU machine (README, "Synthetic benchmark"): seed 0, the
# built-in 200 train / 50 val images, each config's own schedule unless the note says otherwise.
SYNTHETIC_ENTRIES = [
    Entry('synthetic/ssdlite_ghostnet-1.0x_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160),
          '30 epochs', {'box AP': 35.6, 'AP50': 62.5}),
    Entry('synthetic/ssdlite_mobilenetv2_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160),
          'mmdet SSDLite-MobileNetV2, the same data and schedule', {'box AP': 32.1, 'AP50': 61.7}),
    Entry('synthetic/yolov3_ghostnet-1.0x_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160),
          '12 epochs', {'box AP': 39.4, 'AP50': 73.8}),
    Entry('synthetic/retinanet_ghostnet-1.0x_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160),
          '30 epochs', {'box AP': 21.6, 'AP50': 40.5}),
    Entry('synthetic/rtmdet_ghostnet-1.0x_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160), '30 epochs',
          {'box AP': 73.4, 'AP50': 95.2}),
    Entry('synthetic/rtmdet_tiny_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160),
          'mmdet RTMDet-tiny from scratch, the same data and schedule', {'box AP': 67.5, 'AP50': 94.5}),
    Entry('synthetic/yolox_ghostnet-1.0x_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160), '30 epochs',
          {'box AP': 65.6, 'AP50': 93.8}),
    Entry('synthetic/yolox_tiny_synthetic-160.py', 'Object Detection', SYNTHETIC, (160, 160),
          'mmdet YOLOX-tiny from scratch, the same data and schedule', {'box AP': 53.8, 'AP50': 86.5}),
    Entry('synthetic/fpn_ghostnet-1.0x_synthetic-160.py', 'Semantic Segmentation', SYNTHETIC, (160, 160),
          '600 iterations, as tools/main_job.py trains it (2026-12-02; 87.7 to 93.0 mIoU over three runs)',
          {'mIoU': 91.9}),
    Entry('synthetic/deeplabv3_ghostnet-1.0x-d8_synthetic-160.py', 'Semantic Segmentation', SYNTHETIC, (160, 160),
          '300 iterations', {'mIoU': 78.62}),
    Entry('synthetic/ghostnet-v1-1.0x_synthetic-cls-64.py', 'Image Classification', SYNTHETIC, (64, 64),
          '12 epochs on 64x64 crops', {'Top 1 Accuracy': 96.4}),
]


def write_all(root: str) -> list:
    """configs/ghostnet/metafile.yml and configs/synthetic/metafile.yml under ``root``."""
    return [write(osp.join(root, 'configs', 'ghostnet', 'metafile.yml'), ENTRIES),
            write(osp.join(root, 'configs', 'synthetic', 'metafile.yml'), SYNTHETIC_ENTRIES)]
