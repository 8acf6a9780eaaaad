"""The built-in synthetic data (apps/datasets/synthetic.py, tools/data/make_synthetic.py)."""
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from helpers import tool


def test_make_synthetic_tool_writes_readable_coco_and_voc(tmp_path):
    """COCO json that pycocotools reads, VOC masks of the same scenes."""
    out = tmp_path / 'synthetic'
    subprocess.run([sys.executable, tool('data', 'make_synthetic.py'), '--out', str(out),
                    '--num-train', '3', '--num-val', '2', '--image-size', '64'], check=True, capture_output=True)
    coco = COCO(str(out / 'coco' / 'annotations' / 'instances_val.json'))
    assert sorted(coco.getImgIds()) == [1, 2] and len(coco.getCatIds()) > 1
    voc = out / 'voc' / 'VOC2012'
    names = (voc / 'ImageSets' / 'Segmentation' / 'train.txt').read_text().split()
    assert names == ['train_000000', 'train_000001', 'train_000002']
    for name in names:
        assert Image.open(voc / 'JPEGImages' / f'{name}.jpg').size == (64, 64)
        labels = np.array(Image.open(voc / 'SegmentationClass' / f'{name}.png'))
        assert labels.shape == (64, 64) and (labels == 0).any()
    boxes = [a['bbox'] for a in coco.loadAnns(coco.getAnnIds())]
    assert boxes and all(0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 64 and y + h <= 64
                         for x, y, w, h in boxes)


def test_scenes_depend_only_on_seed_split_and_index(tmp_path):
    from ghost_backbones.apps.datasets import make_synthetic
    make_synthetic(str(tmp_path / 'a'), num_train=2, num_val=1, image_size=64, seed=3)
    make_synthetic(str(tmp_path / 'b'), num_train=4, num_val=1, image_size=64, seed=3)
    for name in ('train_000000', 'train_000001'):
        first = np.asarray(Image.open(tmp_path / 'a' / 'voc' / 'VOC2012' / 'SegmentationClass' / f'{name}.png'))
        second = np.asarray(Image.open(tmp_path / 'b' / 'voc' / 'VOC2012' / 'SegmentationClass' / f'{name}.png'))
        np.testing.assert_array_equal(first, second)
