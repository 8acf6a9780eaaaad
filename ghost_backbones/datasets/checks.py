"""Checks of a config's datasets before training starts, with errors that name the file.

mmdet and mmseg find a missing image, a box outside its image or a mask label beyond the
classes only deep inside a dataloader worker (or never: a wrong label silently trains a wrong
model). ``tools/train.py`` runs :func:`check_config_datasets` before it builds the Runner, so
a bad dataset stops the run before anything in the work_dir is written.
"""
import json
import os.path as osp
from typing import Dict, Iterator, List, Optional

import numpy as np

COCO_TYPES = ('CocoDataset',)
SEG_TYPES = ('BaseSegDataset', 'PascalVOCDataset')
MAX_LISTED = 5


class DatasetError(ValueError):
    """A dataset file that cannot train a correct model."""


def leaf_datasets(dataset_cfg) -> Iterator[dict]:
    """The innermost dataset configs of Repeat / Concat / ClassBalanced wrappers."""
    if 'datasets' in dataset_cfg:
        for child in dataset_cfg['datasets']:
            yield from leaf_datasets(child)
    elif 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def join_root(data_root: Optional[str], path: str) -> str:
    return path if (not data_root or osp.isabs(path)) else osp.join(data_root, path)


def summarize(problems: List[str]) -> str:
    more = f'\n  ... and {len(problems) - MAX_LISTED} more' if len(problems) > MAX_LISTED else ''
    return '\n  ' + '\n  '.join(problems[:MAX_LISTED]) + more


def check_coco(ann_file: str, image_dir: str, classes: Optional[List[str]] = None) -> Dict[str, int]:
    """Missing images, boxes outside their image or of non-positive size, unknown categories."""
    if not osp.isfile(ann_file):
        raise DatasetError(f'COCO annotation file {ann_file} does not exist')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as error:
        raise DatasetError(f'{ann_file} is not valid JSON: {error}') from None
    for key in ('images', 'annotations', 'categories'):
        if key not in coco:
            raise DatasetError(f'{ann_file} has no "{key}" list: not a COCO instances file')
    categories = {c['id']: c['name'] for c in coco['categories']}
    if classes is not None:
        unknown_names = sorted(set(classes) - set(categories.values()))
        if unknown_names:
            raise DatasetError(f'{ann_file}: the config classes {unknown_names} are not among its categories '
                               f'{sorted(categories.values())}')
    images = {img['id']: img for img in coco['images']}
    missing = [osp.join(image_dir, img['file_name']) for img in coco['images']
               if not osp.isfile(osp.join(image_dir, img['file_name']))]
    if missing:
        raise DatasetError(f'{ann_file}: {len(missing)} image file(s) listed there do not exist:'
                           + summarize(missing))
    problems = []
    for ann in coco['annotations']:
        image = images.get(ann['image_id'])
        where = f'annotation id {ann.get("id")}'
        if image is None:
            problems.append(f'{where}: image_id {ann["image_id"]} is not in "images"')
            continue
        where += f' ({image["file_name"]})'
        if ann['category_id'] not in categories:
            problems.append(f'{where}: unknown category_id {ann["category_id"]} '
                            f'(categories: {sorted(categories)})')
        x, y, w, h = ann['bbox']
        if w <= 0 or h <= 0:
            problems.append(f'{where}: box {ann["bbox"]} has non-positive width/height')
        elif x < 0 or y < 0 or x + w > image['width'] + 1 or y + h > image['height'] + 1:
            problems.append(f'{where}: box {ann["bbox"]} (x, y, w, h) lies outside the '
                            f'{image["width"]}x{image["height"]} image')
    if problems:
        raise DatasetError(f'{ann_file}: {len(problems)} bad annotation(s):' + summarize(problems))
    return dict(images=len(images), annotations=len(coco['annotations']))


def check_segmentation(split_file: str, image_dir: str, mask_dir: str, num_classes: int,
                       img_suffix: str = '.jpg', seg_map_suffix: str = '.png', ignore_index: int = 255,
                       reduce_zero_label: bool = False) -> Dict[str, int]:
    """Missing images / masks, and mask labels outside ``0..num_classes-1`` (and ignore)."""
    from PIL import Image
    if not osp.isfile(split_file):
        raise DatasetError(f'split file {split_file} does not exist')
    with open(split_file) as f:
        names = [line.strip() for line in f if line.strip()]
    missing, problems = [], []
    for name in names:
        image, mask = osp.join(image_dir, name + img_suffix), osp.join(mask_dir, name + seg_map_suffix)
        missing += [p for p in (image, mask) if not osp.isfile(p)]
        if osp.isfile(mask):
            labels = np.unique(np.asarray(Image.open(mask)))
            if reduce_zero_label:
                labels = np.where(labels == 0, ignore_index, labels - 1)
            bad = [int(v) for v in labels if v != ignore_index and not 0 <= v < num_classes]
            if bad:
                problems.append(f'{mask}: labels {bad} outside 0..{num_classes - 1} (and {ignore_index} = ignore)')
    if missing:
        raise DatasetError(f'{split_file}: {len(missing)} listed file(s) do not exist:' + summarize(missing))
    if problems:
        raise DatasetError(f'{len(problems)} mask(s) under {mask_dir} hold labels beyond the '
                           f'{num_classes} classes:' + summarize(problems))
    return dict(images=len(names))


def head_num_classes(model_cfg) -> Optional[int]:
    for head in ('bbox_head', 'decode_head'):
        if head in model_cfg and 'num_classes' in model_cfg[head]:
            return model_cfg[head]['num_classes']
    return None


def check_config_datasets(cfg) -> List[Dict]:
    """Check the train and val datasets of a config and the head's num_classes against them."""
    reports = []
    num_classes = head_num_classes(cfg.model)
    for split in ('train_dataloader', 'val_dataloader'):
        if not cfg.get(split):
            continue
        for ds in leaf_datasets(cfg[split]['dataset']):
            root = ds.get('data_root')
            classes = (ds.get('metainfo') or {}).get('classes')
            if ds['type'] in COCO_TYPES:
                ann_file = join_root(root, ds['ann_file'])
                report = check_coco(ann_file, join_root(root, ds.get('data_prefix', {}).get('img', '')),
                                    list(classes) if classes else None)
                if classes is None:
                    with open(ann_file) as f:
                        classes = [c['name'] for c in json.load(f)['categories']]
            elif ds['type'] in SEG_TYPES:
                if classes is None:
                    import mmseg.datasets  # noqa: F401
                    from mmseg.registry import DATASETS
                    classes = DATASETS.get(ds['type']).METAINFO.get('classes')
                prefix = ds.get('data_prefix', {})
                report = check_segmentation(
                    join_root(root, ds['ann_file']), join_root(root, prefix.get('img_path', '')),
                    join_root(root, prefix.get('seg_map_path', '')), len(classes),
                    ds.get('img_suffix', '.jpg'), ds.get('seg_map_suffix', '.png'),
                    reduce_zero_label=ds.get('reduce_zero_label', False))
            else:
                continue
            if num_classes is not None and classes is not None and num_classes != len(classes):
                raise DatasetError(f'num_classes={num_classes} in the model head disagrees with the '
                                   f'{len(classes)} classes of the {split} dataset {tuple(classes)}')
            reports.append(dict(split=split, type=ds['type'], **report))
    return reports
