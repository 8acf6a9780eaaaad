"""A deterministic synthetic dataset of coloured shapes, in COCO and Pascal VOC formats.

Nothing can be downloaded here, and tests need real training signal: each scene is a textured
background with 1-4 shapes (circle, square, triangle) of varied size, position and colour
(each class has its own hue range, jittered), which may overlap; later shapes occlude earlier
ones. The same scenes are written as

* ``<out>/coco/``: ``annotations/instances_{train,val}.json`` (boxes of the visible part,
  objects less than 30% visible dropped) and ``train/``, ``val/`` JPEGs, for mmdet's
  ``CocoDataset``;
* ``<out>/voc/VOC2012/``: ``JPEGImages/``, ``SegmentationClass/`` palette PNGs (0 background,
  1..3 the classes, 255 the one-pixel object outlines, ignored as in VOC) and
  ``ImageSets/Segmentation/{train,val}.txt``, for mmseg's segmentation datasets.

* ``<out>/cls/{train,val}/<class>/``: JPEG crops of each visible shape (its box with a margin,
  resized to a square), for mmpretrain's ``CustomDataset`` (:func:`make_synthetic_classification`).

The scene of image ``i`` depends only on ``(seed, split, i)``, so any count reproduces the same
first images.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background',) + CLASSES
# Mean RGB colour of each class; instances are jittered around it.
CLASS_COLOURS = {'circle': (220, 60, 50), 'square': (50, 170, 60), 'triangle': (60, 90, 220)}
IGNORE_INDEX = 255
MIN_VISIBLE = 0.3


def voc_palette() -> List[int]:
    """Pascal VOC's colour map (bit-interleaved), 256 RGB entries flattened."""
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


SEG_PALETTE = [voc_palette()[3 * i:3 * i + 3] for i in range(len(SEG_CLASSES))]


def textured_background(rng: np.random.RandomState, size: int) -> np.ndarray:
    """Smooth random colour field plus stripes and pixel noise (uint8 HxWx3)."""
    coarse = rng.uniform(60, 200, size=(4, 4, 3))
    field = np.array(Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BICUBIC),
                     dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 24)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    field += rng.uniform(5, 25) * stripes[..., None]
    field += rng.normal(0, 8, size=field.shape)
    return np.clip(field, 0, 255).astype(np.uint8)


def shape_polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> List[Tuple[float, float]]:
    if kind == 'square':
        corners = 4
        offset = angle + np.pi / 4
    else:
        corners = 3
        offset = angle - np.pi / 2
    return [(cx + radius * np.cos(offset + 2 * np.pi * k / corners),
             cy + radius * np.sin(offset + 2 * np.pi * k / corners)) for k in range(corners)]


def draw_scene(rng: np.random.RandomState, size: int, min_radius: float, max_radius: float,
               max_objects: int):
    """One scene: image (HxWx3 uint8), instance map (HxW int, 0 = none), the instance
    classes and each instance's unoccluded area (to drop mostly hidden ones)."""
    image = Image.fromarray(textured_background(rng, size))
    instance_map = Image.new('I', (size, size), 0)
    draw_image = ImageDraw.Draw(image)
    draw_ids = ImageDraw.Draw(instance_map)
    classes, full_areas = [], {}
    for instance_id in range(1, rng.randint(1, max_objects + 1) + 1):
        kind = CLASSES[rng.randint(len(CLASSES))]
        radius = rng.uniform(min_radius, max_radius)
        cx, cy = rng.uniform(radius * 0.6, size - radius * 0.6, size=2)
        colour = tuple(int(np.clip(c + rng.randint(-40, 41), 0, 255)) for c in CLASS_COLOURS[kind])
        alone = Image.new('L', (size, size), 0)
        if kind == 'circle':
            box = [cx - radius, cy - radius, cx + radius, cy + radius]
            for canvas, fill in ((draw_image, colour), (draw_ids, instance_id), (ImageDraw.Draw(alone), 1)):
                canvas.ellipse(box, fill=fill)
        else:
            polygon = shape_polygon(kind, cx, cy, radius, rng.uniform(0, np.pi / 2))
            for canvas, fill in ((draw_image, colour), (draw_ids, instance_id), (ImageDraw.Draw(alone), 1)):
                canvas.polygon(polygon, fill=fill)
        classes.append(kind)
        full_areas[instance_id] = int(np.asarray(alone).sum())
    return np.asarray(image), np.asarray(instance_map, dtype=np.int32), classes, full_areas


def outline(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another instance: a two-pixel band on every outline."""
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        differs = np.diff(labels, axis=axis) != 0
        if axis == 0:
            edge[1:] |= differs
            edge[:-1] |= differs
        else:
            edge[:, 1:] |= differs
            edge[:, :-1] |= differs
    return edge


def scene_annotations(instance_map: np.ndarray, classes: List[str], full_areas: Dict[int, int]):
    """COCO-style boxes of the visible part of each sufficiently visible instance."""
    annotations = []
    for instance_id, kind in enumerate(classes, start=1):
        ys, xs = np.nonzero(instance_map == instance_id)
        if len(xs) == 0 or len(xs) < MIN_VISIBLE * full_areas[instance_id]:
            continue
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        annotations.append(dict(category_id=CLASSES.index(kind) + 1, bbox=[float(x0), float(y0),
                                float(x1 - x0), float(y1 - y0)], area=float(len(xs)), iscrowd=0))
    return annotations


def make_synthetic(out_dir: str, num_train: int = 200, num_val: int = 50, image_size: int = 160,
                   seed: int = 0, min_radius: float = None, max_radius: float = None,
                   max_objects: int = 4) -> Dict[str, int]:
    """Write the dataset under ``out_dir`` (see module docstring); returns image counts."""
    min_radius = min_radius or image_size * 0.08
    max_radius = max_radius or image_size * 0.25
    coco_root = osp.join(out_dir, 'coco')
    voc_root = osp.join(out_dir, 'voc', 'VOC2012')
    for sub in ('JPEGImages', 'SegmentationClass', osp.join('ImageSets', 'Segmentation')):
        os.makedirs(osp.join(voc_root, sub), exist_ok=True)
    os.makedirs(osp.join(coco_root, 'annotations'), exist_ok=True)
    palette = voc_palette()
    counts = {}
    for split_index, (split, count) in enumerate((('train', num_train), ('val', num_val))):
        os.makedirs(osp.join(coco_root, split), exist_ok=True)
        images, annotations, names = [], [], []
        for index in range(count):
            rng = np.random.RandomState([seed, split_index, index])
            image, instance_map, classes, full_areas = draw_scene(
                rng, image_size, min_radius, max_radius, max_objects)
            name = f'{split}_{index:06d}'
            names.append(name)
            Image.fromarray(image).save(osp.join(coco_root, split, name + '.jpg'), quality=95)
            Image.fromarray(image).save(osp.join(voc_root, 'JPEGImages', name + '.jpg'), quality=95)
            image_id = index + 1
            images.append(dict(id=image_id, file_name=name + '.jpg', height=image_size, width=image_size))
            for ann in scene_annotations(instance_map, classes, full_areas):
                annotations.append(dict(ann, id=len(annotations) + 1, image_id=image_id))
            class_of_instance = np.array([0] + [CLASSES.index(k) + 1 for k in classes], dtype=np.uint8)
            labels = class_of_instance[instance_map]
            labels[outline(instance_map)] = IGNORE_INDEX
            mask = Image.fromarray(labels, mode='P')
            mask.putpalette(palette)
            mask.save(osp.join(voc_root, 'SegmentationClass', name + '.png'))
        coco = dict(images=images, annotations=annotations,
                    categories=[dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)])
        with open(osp.join(coco_root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        with open(osp.join(voc_root, 'ImageSets', 'Segmentation', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')
        counts[split] = count
    return counts



def crop_box(box, margin: float, size: int):
    """A square around the (x, y, w, h) box, grown by ``margin`` and kept inside the image."""
    x, y, w, h = box
    side = min(size, max(w, h) * (1 + 2 * margin))
    cx, cy = x + w / 2, y + h / 2
    left = int(round(min(max(cx - side / 2, 0), size - side)))
    top = int(round(min(max(cy - side / 2, 0), size - side)))
    return left, top, left + int(round(side)), top + int(round(side))


def make_synthetic_classification(out_dir: str, num_train: int = 200, num_val: int = 50, image_size: int = 160,
                                  crop_size: int = 64, seed: int = 0, margin: float = 0.15) -> Dict[str, int]:
    """Write ``<out_dir>/cls/{train,val}/<class>/*.jpg``: one crop per visible shape of the same
    scenes as :func:`make_synthetic`; returns the crop counts."""
    counts = {}
    for split_index, (split, count) in enumerate((('train', num_train), ('val', num_val))):
        for name in CLASSES:
            os.makedirs(osp.join(out_dir, 'cls', split, name), exist_ok=True)
        crops = 0
        for index in range(count):
            rng = np.random.RandomState([seed, split_index, index])
            image, instance_map, classes, full_areas = draw_scene(
                rng, image_size, image_size * 0.08, image_size * 0.25, 4)
            for k, ann in enumerate(scene_annotations(instance_map, classes, full_areas)):
                crop = Image.fromarray(image).crop(crop_box(ann['bbox'], margin, image_size))
                crop = crop.resize((crop_size, crop_size), Image.BILINEAR)
                crop.save(osp.join(out_dir, 'cls', split, CLASSES[ann['category_id'] - 1],
                                   f'{split}_{index:06d}_{k}.jpg'), quality=95)
                crops += 1
        counts[split] = crops
    return counts
