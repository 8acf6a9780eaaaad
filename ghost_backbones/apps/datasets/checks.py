"""Checks of a config's datasets before training, with errors that name the file, the record,
the bad value and what mmdet / mmseg expect.

mmdet and mmseg find a broken file deep inside a dataloader worker (``cv2.error ...
!buf.empty()``, naming no file), or never: a NaN box or an RGB mask trains a wrong model without
a word. :func:`check_config_datasets` reads what they will read, the way they read it, and stops
with one :class:`DatasetError` listing the problems. It never blocks what they accept: mmseg's
directory-scan mode, ``reduce_zero_label``, ``ignore_index``, grayscale / RGBA / CMYK images,
category ids that are not 1..N, crowd annotations, images without annotations.

Images are checked from their headers (``PIL.Image.open`` + ``verify()``) and, but for PNGs
(whose ``verify()`` checks every chunk), decoded by OpenCV as mmcv does, JPEGs at 1/8 scale:
a JPEG with one damaged byte in its tables passes every header check and then fails in mmcv.
``sample`` limits the decodes for very large sets. Masks are decoded: their labels are checked.
"""
import inspect
import json
import math
import os
import os.path as osp
from collections import Counter
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

MAX_LISTED = 8
LABEL_MODES = ('1', 'L', 'P', 'I', 'I;16', 'I;16B', 'I;16L')  # one value per pixel
EXIF_ORIENTATION = 0x0112


class DatasetError(ValueError):
    """A dataset that mmdet / mmseg would fail on, or would silently train a wrong model from."""


def summarize(title: str, problems: List[str]) -> str:
    more = f'\n  ... and {len(problems) - MAX_LISTED} more' if len(problems) > MAX_LISTED else ''
    return f'{title}: {len(problems)} problem(s):\n  ' + '\n  '.join(problems[:MAX_LISTED]) + more


def raise_if(problems: List[str], title: str) -> None:
    if problems:
        raise DatasetError(summarize(title, problems))


def join_root(data_root: Optional[str], path: str) -> str:
    return path if (not data_root or not path or osp.isabs(path)) else osp.join(data_root, path)


# ---------------------------------------------------------------------------- files

def decodes_with_opencv(path: str) -> bool:
    """Whether OpenCV (mmcv's decoder) reads the file. At 1/8 scale for JPEGs: on random byte
    corruptions of our JPEGs this failed exactly where the full decode fails, in half the time."""
    import cv2
    return cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None


def image_problem(path: str, decode: bool = True) -> Tuple[Optional[str], Optional[Tuple[int, int]]]:
    """(problem, size as decoded) of an image file: header and ``verify()`` (Pillow), then, for
    formats other than PNG (whose ``verify()`` checks every chunk) and when ``decode``, a decode
    with OpenCV as mmcv does. The size is the one mmcv decodes to: JPEG EXIF orientations 5-8
    swap width and height."""
    from PIL import Image, UnidentifiedImageError
    try:
        if os.path.getsize(path) == 0:
            return 'is an empty file (0 bytes)', None
        with Image.open(path) as image:
            width, height = image.size
            image_format = image.format
            if image_format == 'JPEG' and image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
            image.verify()
        if decode and image_format != 'PNG' and not decodes_with_opencv(path):
            return 'is truncated or damaged: OpenCV cannot decode it', None
    except FileNotFoundError:
        return 'does not exist', None
    except UnidentifiedImageError:
        return 'is not an image file Pillow or OpenCV can read', None
    except (OSError, SyntaxError, ValueError) as error:
        return f'is damaged ({error})', None
    return None, (width, height)


def read_mask(path: str) -> Tuple[Optional[str], Optional[np.ndarray]]:
    """(problem, label array as mmseg reads it before its uint8 cast)."""
    from PIL import Image
    problem, _ = image_problem(path)
    if problem:
        return problem, None
    try:
        with Image.open(path) as mask:
            if mask.mode not in LABEL_MODES:
                return (f'is a {mask.mode} image; mmseg expects a label map (one class index per pixel: '
                        f'mode L or P, e.g. a palette PNG)'), None
            return None, np.asarray(mask)
    except (OSError, SyntaxError, ValueError) as error:
        return f'is damaged ({error})', None


def read_json(path: str):
    """The parsed JSON, or a DatasetError naming the file and where it is broken."""
    if not osp.isfile(path):
        raise DatasetError(f'annotation file {path} does not exist')
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as error:
        raise DatasetError(f'{path} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); '
                           'COCO annotation files are UTF-8 JSON') from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f'{path} is not valid JSON: {error.msg} at line {error.lineno}, '
                           f'column {error.colno}') from None


# ---------------------------------------------------------------------------- COCO (mmdet)

def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def coco_lists(coco, ann_file: str) -> Tuple[list, list, list]:
    if not isinstance(coco, dict):
        raise DatasetError(f'{ann_file}: the top level is a {type(coco).__name__}; a COCO instances file is an '
                           'object with "images", "annotations" and "categories" lists')
    lists = []
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(coco.get(key), list):
            found = 'missing' if key not in coco else f'{json.dumps(coco[key])[:40]} ({type(coco[key]).__name__})'
            raise DatasetError(f'{ann_file}: "{key}" is {found}; mmdet expects a list')
        lists.append(coco[key])
    return tuple(lists)


def check_categories(categories: list, ann_file: str, classes: Optional[Sequence[str]]) -> Dict:
    problems, names = [], {}
    for index, category in enumerate(categories):
        where = f'categories[{index}]'
        if not isinstance(category, dict) or not isinstance(category.get('id'), int) or \
                isinstance(category.get('id'), bool) or not isinstance(category.get('name'), str):
            problems.append(f'{where} = {json.dumps(category)[:80]}: expected {{"id": integer, "name": text}}')
        elif category['id'] in names:
            problems.append(f'{where}: category id {category["id"]} appears twice')
        else:
            names[category['id']] = category['name']
    raise_if(problems, ann_file)
    if classes is not None:
        unknown = sorted(set(classes) - set(names.values()))
        if unknown:
            raise DatasetError(f'{ann_file}: the config classes {unknown} are not among its categories '
                               f'{sorted(names.values())}')
    return names


def decode_choice(count: int, sample: Optional[int]) -> set:
    """Which of ``count`` images to decode: all, or a seeded random ``sample`` of them."""
    if sample is None or sample >= count:
        return set(range(count))
    return set(np.random.RandomState(0).choice(count, size=sample, replace=False).tolist())


def check_images(images: list, ann_file: str, image_dir: str, sample: Optional[int] = None) -> Dict:
    problems, by_id = [], {}
    decoded = decode_choice(len(images), sample)
    for index, image in enumerate(images):
        where = f'images[{index}]'
        if not isinstance(image, dict):
            problems.append(f'{where} is {json.dumps(image)[:40]}, not an object')
            continue
        where = f'image id {image.get("id")!r} ({image.get("file_name")!r})'
        if 'id' not in image or not isinstance(image['id'], (int, str)) or isinstance(image['id'], bool):
            problems.append(f'{where}: "id" must be an integer (or text)')
        elif image['id'] in by_id:
            problems.append(f'{where}: id {image["id"]!r} is used by two images')
        if not isinstance(image.get('file_name'), str) or not image['file_name']:
            problems.append(f'{where}: "file_name" must be a file name, got {image.get("file_name")!r}')
            continue
        size = (image.get('width'), image.get('height'))
        if not all(is_positive_int(v) for v in size):
            problems.append(f'{where}: width, height = {size}; mmdet expects positive integers')
            continue
        path = osp.join(image_dir, image['file_name'])
        problem, actual = image_problem(path, decode=index in decoded)
        if problem:
            problems.append(f'{where}: {path} {problem}')
        elif actual != size and actual != size[::-1]:
            problems.append(f'{where}: {path} is {actual[0]}x{actual[1]} but the annotation file says '
                            f'{size[0]}x{size[1]}; boxes are in the declared size')
        if isinstance(image.get('id'), (int, str)):
            by_id[image['id']] = image
    raise_if(problems, ann_file)
    return by_id


def annotation_problem(ann, images: Dict, categories: Dict) -> Optional[str]:
    """What is wrong with one annotation, as mmdet's CocoDataset would read it."""
    if not isinstance(ann, dict):
        return f'{json.dumps(ann)[:40]} is not an object'
    if ann.get('image_id') not in images:
        return f'image_id {ann.get("image_id")!r} is not in "images"'
    if ann.get('category_id') not in categories:
        return f'unknown category_id {ann.get("category_id")!r} (categories: {sorted(categories)})'
    bbox = ann.get('bbox')
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        return f'bbox {json.dumps(bbox)[:60]}; mmdet expects [x, y, width, height], four finite numbers'
    if not is_number(ann.get('area')):
        return f'area {json.dumps(ann.get("area"))}; mmdet expects a finite number'
    x, y, w, h = bbox
    image = images[ann['image_id']]
    if w <= 0 or h <= 0:
        return f'bbox {bbox} has non-positive width/height (expected [x, y, width, height], width, height > 0)'
    if x < 0 or y < 0 or x + w > image['width'] + 1 or y + h > image['height'] + 1:
        return f'bbox {bbox} (x, y, width, height) lies outside the {image["width"]}x{image["height"]} image'
    return None


def check_coco(ann_file: str, image_dir: str, classes: Optional[Sequence[str]] = None,
               train: bool = True, filter_cfg: Optional[dict] = None, sample: Optional[int] = None) -> Dict[str, int]:
    """A COCO instances file and its images, as mmdet's CocoDataset reads them (``sample``: decode
    only that many images, chosen at random with a fixed seed; the others by their headers)."""
    coco = read_json(ann_file)
    images, annotations, categories = coco_lists(coco, ann_file)
    if not images:
        raise DatasetError(f'{ann_file}: "images" is empty: the dataset has no samples')
    names = check_categories(categories, ann_file, classes)
    by_id = check_images(images, ann_file, image_dir, sample)
    problems, ids = [], Counter()
    for index, ann in enumerate(annotations):
        ann_id = ann.get('id') if isinstance(ann, dict) else None
        where = f'annotation id {ann_id!r}' if ann_id is not None else f'annotations[{index}]'
        if isinstance(ann, dict) and ann.get('image_id') in by_id:
            where += f' ({by_id[ann["image_id"]]["file_name"]})'
        problem = annotation_problem(ann, by_id, names)
        if problem is None and (not isinstance(ann_id, int) or isinstance(ann_id, bool)):
            problem = f'"id" is {ann_id!r}; pycocotools indexes annotations by an integer id'
        if problem:
            problems.append(f'{where}: {problem}')
        ids[ann_id] += 1
    problems += [f'annotation id {ann_id!r} is used {count} times (mmdet requires unique ids)'
                 for ann_id, count in ids.items() if count > 1 and ann_id is not None]
    raise_if(problems, ann_file)
    if not annotations:
        raise DatasetError(f'{ann_file}: "annotations" is empty: nothing to {"train on" if train else "score against"}')
    if train and (filter_cfg or {}).get('filter_empty_gt', False):
        wanted = {cat_id for cat_id, name in names.items() if classes is None or name in classes}
        with_boxes = {ann['image_id'] for ann in annotations if ann['category_id'] in wanted}
        min_size = (filter_cfg or {}).get('min_size', 0)
        kept = [i for i in with_boxes if min(by_id[i]['width'], by_id[i]['height']) >= min_size]
        if not kept:
            raise DatasetError(f'{ann_file}: no image has an annotation of the classes {sorted(names[c] for c in wanted)}'
                               f' (and min_size {min_size}): with filter_empty_gt the training set is empty')
    return dict(images=len(images), annotations=len(annotations))


# ---------------------------------------------------------------------------- segmentation (mmseg)

def split_names(split_file: str) -> List[str]:
    """The sample names of an mmseg split file (one per line, as mmengine reads it)."""
    with open(split_file, 'rb') as f:
        raw = f.read()
    try:
        lines = raw.decode('utf-8').split('\n')
    except UnicodeDecodeError as error:
        raise DatasetError(f'split file {split_file} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset '
                           f'{error.start})') from None
    if lines and lines[-1] == '':
        lines = lines[:-1]  # the final newline
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise DatasetError(f'split file {split_file}: line(s) {blank[:MAX_LISTED]} are blank; mmseg reads every line '
                           'as a sample name (a blank one names the file "<img_dir>/<img_suffix>")')
    return [line.strip() for line in lines]


def scan_names(image_dir: str, img_suffix: str) -> List[str]:
    """Sample names of mmseg's directory-scan mode: every file under image_dir ending in img_suffix."""
    if not osp.isdir(image_dir):
        raise DatasetError(f'image directory {image_dir} does not exist (mmseg scans it because ann_file is empty)')
    names = []
    for root, _, files in os.walk(image_dir):
        for name in files:
            if name.endswith(img_suffix):
                names.append(osp.relpath(osp.join(root, name), image_dir)[:-len(img_suffix)])
    return sorted(names)


def label_problem(labels: np.ndarray, num_classes: int, ignore_index: int, reduce_zero_label: bool) -> Optional[str]:
    """Labels beyond the classes once mmseg has read them (uint8 cast, reduce_zero_label)."""
    values = np.unique(labels)
    if values.size and (values.min() < 0 or values.max() > 255):
        return f'holds values {values[(values < 0) | (values > 255)][:5].tolist()} that mmseg\'s uint8 labels cannot hold'
    if reduce_zero_label:  # mmseg: 0 becomes 255, v becomes v - 1, 255 stays 255
        values = np.where(values == 0, 255, values - 1)
        values = np.where(values == 254, 255, values)
    bad = sorted(int(v) for v in np.unique(values) if v != ignore_index and not 0 <= v < num_classes)
    if bad:
        zero = ' after reduce_zero_label' if reduce_zero_label else ''
        return (f'labels {bad}{zero} outside 0..{num_classes - 1} (and {ignore_index}, the ignore_index '
                'of the decode head)')
    return None


def check_segmentation(image_dir: str, mask_dir: Optional[str], num_classes: int, split_file: str = '',
                       img_suffix: str = '.jpg', seg_map_suffix: str = '.png', ignore_index: int = 255,
                       reduce_zero_label: bool = False, sample: Optional[int] = None) -> Dict[str, int]:
    """Images and masks of an mmseg dataset: a split file, or (``split_file`` empty or a
    directory) every image under ``image_dir``, as mmseg's BaseSegDataset lists them. Masks are
    always decoded (their labels are checked); ``sample`` limits the images decoded."""
    if split_file and not osp.isdir(split_file):
        if not osp.isfile(split_file):
            raise DatasetError(f'split file {split_file} does not exist')
        names, source = split_names(split_file), f'split file {split_file}'
    else:
        names, source = scan_names(image_dir, img_suffix), f'images under {image_dir}'
    if not names:
        raise DatasetError(f'{source}: no samples (mmseg would build an empty dataset)')
    problems, decoded = [], decode_choice(len(names), sample)
    for line, name in enumerate(names, start=1):
        where = f'line {line} ({name!r})' if split_file and not osp.isdir(split_file) else repr(name)
        image_path = osp.join(image_dir, name + img_suffix)
        problem, image_size = image_problem(image_path, decode=line - 1 in decoded)
        if problem:
            problems.append(f'{where}: image {image_path} {problem}')
        if mask_dir is None:
            continue
        mask_path = osp.join(mask_dir, name + seg_map_suffix)
        problem, labels = read_mask(mask_path)
        if problem:
            problems.append(f'{where}: mask {mask_path} {problem}')
            continue
        mask_size = (labels.shape[1], labels.shape[0])
        if image_size and mask_size != image_size:
            problems.append(f'{where}: mask {mask_path} is {mask_size[0]}x{mask_size[1]} but its image is '
                            f'{image_size[0]}x{image_size[1]}; mmseg expects one label per image pixel')
        problem = label_problem(labels, num_classes, ignore_index, reduce_zero_label)
        if problem:
            problems.append(f'{where}: mask {mask_path} {problem}')
    raise_if(problems, source)
    return dict(images=len(names))


# ---------------------------------------------------------------------------- configs

def leaf_datasets(dataset_cfg) -> Iterator[dict]:
    """The innermost dataset configs of Repeat / Concat / ClassBalanced / MultiImageMix wrappers."""
    if 'datasets' in dataset_cfg:
        for child in dataset_cfg['datasets']:
            yield from leaf_datasets(child)
    elif 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def dataset_class(type_name: str, scope: str):
    """The registered dataset class (or None), for its defaults and its family."""
    import importlib
    try:
        importlib.import_module(f'{scope}.datasets')
        return importlib.import_module(f'{scope}.registry').DATASETS.get(type_name)
    except (ImportError, KeyError):
        return None


def argument(ds: dict, cls, name: str, default=None):
    """A dataset argument: from the config, else the class's default (e.g. ADE20K's reduce_zero_label)."""
    if name in ds:
        return ds[name]
    try:
        parameter = inspect.signature(cls.__init__).parameters.get(name)
    except (TypeError, ValueError):
        parameter = None
    return parameter.default if parameter is not None and parameter.default is not inspect.Parameter.empty else default


def head_setting(model_cfg, key: str):
    for head in ('bbox_head', 'decode_head'):
        if head in model_cfg and key in model_cfg[head]:
            return model_cfg[head][key]
    return None


def check_detection_dataset(ds: dict, cls, train: bool, sample: Optional[int]) -> Tuple[Dict, List[str]]:
    root = ds.get('data_root')
    if not ds.get('ann_file'):
        raise DatasetError(f'{ds["type"]} dataset has no ann_file (a COCO instances JSON file)')
    ann_file = join_root(root, ds['ann_file'])
    classes = (ds.get('metainfo') or {}).get('classes')
    report = check_coco(ann_file, join_root(root, (ds.get('data_prefix') or {}).get('img', '')),
                        list(classes) if classes else None, train=train and not ds.get('test_mode', False),
                        filter_cfg=ds.get('filter_cfg'), sample=sample)
    if classes is None:
        classes = [c['name'] for c in read_json(ann_file)['categories']]
    return report, list(classes)


def check_segmentation_dataset(ds: dict, cls, model_cfg, sample: Optional[int]) -> Tuple[Dict, List[str]]:
    root = ds.get('data_root')
    classes = (ds.get('metainfo') or {}).get('classes') or (getattr(cls, 'METAINFO', {}) or {}).get('classes')
    if classes is None:
        raise DatasetError(f'{ds["type"]} dataset: no classes in its metainfo or its class')
    prefix = ds.get('data_prefix') or {}
    mask_dir = prefix.get('seg_map_path')
    ignore_index = head_setting(model_cfg, 'ignore_index')  # what the loss ignores
    ignore_index = 255 if ignore_index is None else ignore_index
    report = check_segmentation(
        join_root(root, prefix.get('img_path', '')), join_root(root, mask_dir) if mask_dir is not None else None,
        len(classes), join_root(root, ds.get('ann_file', '') or ''), argument(ds, cls, 'img_suffix', '.jpg'),
        argument(ds, cls, 'seg_map_suffix', '.png'), ignore_index, bool(argument(ds, cls, 'reduce_zero_label', False)),
        sample)
    return report, list(classes)


def check_config_datasets(cfg, sample: Optional[int] = None) -> List[Dict]:
    """Check the train and val datasets of an mmdet / mmseg config, and the head's num_classes.
    ``sample``: decode that many images per dataset (the rest are checked by their headers)."""
    reports = []
    num_classes = head_setting(cfg.model, 'num_classes')
    scope = cfg.get('default_scope')
    for split in ('train_dataloader', 'val_dataloader'):
        if not cfg.get(split):
            continue
        for ds in leaf_datasets(cfg[split]['dataset']):
            cls = dataset_class(ds.get('type', ''), scope) if scope in ('mmdet', 'mmseg') else None
            if scope == 'mmdet' and is_coco_dataset(cls):
                report, classes = check_detection_dataset(ds, cls, split == 'train_dataloader', sample)
            elif scope == 'mmseg' and is_segmentation_dataset(cls):
                report, classes = check_segmentation_dataset(ds, cls, cfg.model, sample)
            else:
                continue
            if num_classes is not None and num_classes != len(classes):
                raise DatasetError(f'num_classes={num_classes} in the model head disagrees with the '
                                   f'{len(classes)} classes of the {split} dataset {tuple(classes)}')
            reports.append(dict(split=split, type=ds['type'], **report))
    return reports


def check_dataset_paths(cfg, split: str = 'test_dataloader') -> None:
    """That the annotation file and image folder of each dataset of ``split`` exist: before a
    test the Runner builds the dataset first and would stop with a pycocotools / mmseg traceback.
    Only their existence: a test set may lack annotations (COCO test-dev with ``format_only``)."""
    if not cfg.get(split):
        return
    for ds in leaf_datasets(cfg[split]['dataset']):
        root = ds.get('data_root')
        prefix = ds.get('data_prefix') or {}
        image_dir = prefix.get('img', prefix.get('img_path'))
        for what, path in (('annotation file', ds.get('ann_file')), ('image folder', image_dir)):
            path = join_root(root, path) if path else None
            if path and not osp.exists(path):
                raise DatasetError(f'{split}: {what} {path} does not exist '
                                   f'(data_root={root!r}, {ds.get("type")} dataset)')


def is_coco_dataset(cls) -> bool:
    from mmdet.datasets import CocoDataset
    return isinstance(cls, type) and issubclass(cls, CocoDataset)


def is_segmentation_dataset(cls) -> bool:
    from mmseg.datasets import BaseSegDataset
    return isinstance(cls, type) and issubclass(cls, BaseSegDataset)
