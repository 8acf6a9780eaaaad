"""Fuzzing the dataset checks (seeded, bounded): random corruptions of copies of the synthetic
COCO and VOC sets. Each one is either refused with DatasetError, or passes the check and then
every sample goes through mmdet's / mmseg's data pipeline and training iterations run with a
finite loss. Any other exception, or a pass followed by a failure, fails the test."""
import copy
import json
import os
import os.path as osp
import random
import shutil
import traceback
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from ghost_backbones.apps.datasets import make_synthetic
from ghost_backbones.apps.datasets.checks import DatasetError, check_config_datasets
from ghost_backbones.apps.runtime import parse_cfg_options
from helpers import data_options, det_cfg, seg_cfg

pytestmark = pytest.mark.slow
# 60 cases a format in the suite; GHOST_BACKBONES_FUZZ_CASES=N for a longer run (same seed, N cases)
CASES = dict.fromkeys(('coco', 'voc'), int(os.environ.get('GHOST_BACKBONES_FUZZ_CASES', '60')))
ODD_VALUES = [None, -1, 0, 0.5, 1e12, float('nan'), float('inf'), '', 'x', [], {}, True, [1, 2, 3], [1, 2, 3, 4],
              12345, -3.5]


# ---------------------------------------------------------------------------- file corruptions

def files_under(folder):
    return sorted(osp.join(folder, name) for name in os.listdir(folder))


def delete(rng, path):
    os.remove(path)
    return f'delete {osp.basename(path)}'


def truncate(rng, path):
    size = osp.getsize(path)
    keep = rng.choice([0, 1, 10, size // 3, size // 2, size - 1])
    with open(path, 'r+b') as f:
        f.truncate(keep)
    return f'truncate {osp.basename(path)} to {keep} bytes'


def garble(rng, path):
    data = bytearray(open(path, 'rb').read())
    start = rng.randrange(len(data))
    length = rng.choice([1, 8, 64, 512])
    data[start:start + length] = bytes(rng.randrange(256) for _ in range(min(length, len(data) - start)))
    open(path, 'wb').write(bytes(data))
    return f'garble {length} bytes of {osp.basename(path)} at {start}'


def replace_with_text(rng, path):
    open(path, 'wb').write(b'this is not an image')
    return f'text in {osp.basename(path)}'


def convert_mode(rng, path):
    fmt = rng.choice(['JPEG', 'PNG'])
    mode = rng.choice(['L', 'CMYK', 'RGB'] if fmt == 'JPEG' else ['L', 'LA', 'RGB', 'RGBA', 'P'])
    Image.open(path).convert(mode).save(path, format=fmt)
    return f'{osp.basename(path)} as {mode} {fmt}'


def resize(rng, path):
    image = Image.open(path)
    size = (rng.choice([32, 63, 64, 65, 96]), rng.choice([32, 64, 80]))
    image.resize(size, Image.NEAREST).save(path, format=image.format)
    return f'resize {osp.basename(path)} to {size}'


FILE_CORRUPTIONS = [delete, truncate, garble, replace_with_text, convert_mode, resize]


# ---------------------------------------------------------------------------- COCO json corruptions

def json_path(rng, coco):
    section = rng.choice(['images', 'annotations', 'annotations', 'categories'])
    if not coco.get(section):
        return section, None, None
    index = rng.randrange(len(coco[section]))
    keys = {'images': ['id', 'file_name', 'width', 'height'],
            'annotations': ['id', 'image_id', 'category_id', 'bbox', 'bbox', 'area', 'iscrowd'],
            'categories': ['id', 'name']}[section]
    return section, index, rng.choice(keys)


def set_value(rng, coco):
    section, index, key = json_path(rng, coco)
    if index is None:
        return 'nothing to set'
    value = rng.choice(ODD_VALUES)
    if key == 'bbox' and rng.random() < 0.5:
        coco[section][index]['bbox'][rng.randrange(4)] = value
        return f'{section}[{index}].bbox[i] = {value!r}'
    coco[section][index][key] = value
    return f'{section}[{index}].{key} = {value!r}'


def delete_key(rng, coco):
    section, index, key = json_path(rng, coco)
    if index is not None:
        coco[section][index].pop(key, None)
    return f'del {section}[{index}].{key}'


def duplicate_entry(rng, coco):
    section = rng.choice(['images', 'annotations', 'categories'])
    if coco[section]:
        coco[section].append(copy.deepcopy(rng.choice(coco[section])))
    return f'duplicate an entry of {section}'


def drop_entries(rng, coco):
    section = rng.choice(['images', 'annotations', 'annotations', 'categories'])
    keep = rng.choice([0.0, 0.5, 0.9])
    coco[section] = [entry for entry in coco[section] if rng.random() < keep]
    return f'keep {keep:.0%} of {section}'


def replace_section(rng, coco):
    section = rng.choice(['images', 'annotations', 'categories'])
    value = rng.choice([None, {}, [], 'x', 3])
    coco[section] = value
    return f'{section} = {value!r}'


def valid_variant(rng, coco):
    """Edits mmdet accepts: crowd flags, category ids that are not 1..N."""
    if rng.random() < 0.5:
        for ann in coco['annotations'][::3]:
            ann['iscrowd'] = 1
        return 'iscrowd = 1 on a third of the annotations'
    for category in coco['categories']:
        category['id'] += 40
    for ann in coco['annotations']:
        ann['category_id'] += 40
    return 'category ids 41..43'


JSON_EDITS = [set_value, set_value, delete_key, duplicate_entry, drop_entries, replace_section, valid_variant]


def corrupt_json_text(rng, path):
    data = open(path, 'rb').read()
    how = rng.choice(['truncate', 'non-utf8', 'null', 'garble'])
    if how == 'truncate':
        data = data[:rng.randrange(len(data))]
    elif how == 'non-utf8':
        at = rng.randrange(len(data))
        data = data[:at] + b'\xff\xfe' + data[at:]
    elif how == 'null':
        data = b'null'
    else:
        at = rng.randrange(len(data))
        data = data[:at] + bytes(rng.randrange(256) for _ in range(4)) + data[at + 4:]
    open(path, 'wb').write(data)
    return f'{how} the text of {osp.basename(path)}'


def corrupt_coco(rng, root):
    split = rng.choice(['train', 'train', 'val'])
    ann_file = osp.join(root, 'coco', 'annotations', f'instances_{split}.json')
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(FILE_CORRUPTIONS)(rng, rng.choice(files_under(osp.join(root, 'coco', split))))
    if kind < 0.45:
        return corrupt_json_text(rng, ann_file)
    with open(ann_file) as f:
        coco = json.load(f)
    description = rng.choice(JSON_EDITS)(rng, coco)
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    return f'{split}: {description}'


# ---------------------------------------------------------------------------- VOC corruptions

def relabel(rng, path):
    labels = np.asarray(Image.open(path)).copy()
    value = rng.choice([4, 5, 7, 100, 254, 255, 0, 3])
    y, x = rng.randrange(labels.shape[0]), rng.randrange(labels.shape[1])
    labels[y:y + 8, x:x + 8] = value
    Image.fromarray(labels).save(path)
    return f'label {value} in {osp.basename(path)}'


def wide_labels(rng, path):
    labels = np.asarray(Image.open(path)).astype(np.uint16)
    labels[:4, :4] = rng.choice([256, 300, 1000])
    Image.fromarray(labels).save(path)  # a 16-bit PNG
    return f'16-bit labels up to {labels.max()} in {osp.basename(path)}'


def edit_split(rng, path):
    lines = open(path).read().splitlines()
    how = rng.choice(['drop', 'duplicate', 'blank', 'unknown', 'empty', 'spaces', 'non-utf8', 'no final newline'])
    if how == 'drop':
        lines = [line for line in lines if rng.random() < 0.6] or lines[:1]
    elif how == 'duplicate':
        lines = lines + rng.sample(lines, k=min(3, len(lines)))
    elif how == 'blank':
        lines.insert(rng.randrange(len(lines) + 1), '')
    elif how == 'unknown':
        lines.append('no_such_image')
    elif how == 'empty':
        lines = []
    elif how == 'spaces':
        lines[0] = f'  {lines[0]}  '
    if how == 'non-utf8':
        open(path, 'wb').write(b'\xff'.join(line.encode() for line in lines))
    else:
        open(path, 'w').write('\n'.join(lines) + ('' if how == 'no final newline' else '\n'))
    return f'split file: {how}'


def corrupt_voc(rng, root):
    voc = osp.join(root, 'voc', 'VOC2012')
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(FILE_CORRUPTIONS)(rng, rng.choice(files_under(osp.join(voc, 'JPEGImages'))))
    if kind < 0.65:
        corruption = rng.choice(FILE_CORRUPTIONS + [relabel, relabel, wide_labels])
        return corruption(rng, rng.choice(files_under(osp.join(voc, 'SegmentationClass'))))
    split = rng.choice(['train', 'val'])
    return edit_split(rng, osp.join(voc, 'ImageSets', 'Segmentation', f'{split}.txt'))


# ---------------------------------------------------------------------------- the harness

def pointed_at(cfg, fmt, root):
    """The config with its data at ``root`` (what --cfg-options data_root=... does)."""
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict(parse_cfg_options(data_options('mmdet' if fmt == 'coco' else 'mmseg', root)))
    return cfg


def build_model(cfg):
    from mmengine.registry import DefaultScope, init_default_scope
    from ghost_backbones.apps.runtime import replace_sync_bn
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    replace_sync_bn(cfg.model)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.build(cfg.model).train()


def pipeline_and_train(cfg, model):
    """Every train and val sample through the config's pipeline, then two training steps."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    datasets = __import__(f'{cfg.default_scope}.registry', fromlist=['DATASETS']).DATASETS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        train = datasets.build(copy.deepcopy(cfg.train_dataloader.dataset))
        val = datasets.build(copy.deepcopy(cfg.val_dataloader.dataset))
    assert len(train) > 0 and len(val) > 0
    samples = [train[i] for i in range(len(train))]
    for i in range(len(val)):
        val[i]
    for start in (0, 2):
        batch = model.data_preprocessor(pseudo_collate((samples * 2)[start:start + 2]), training=True)
        loss, _ = model.parse_losses(model(**batch, mode='loss'))
        assert torch.isfinite(loss), f'loss {loss}'
        loss.backward()


@pytest.mark.parametrize('fmt', ['coco', 'voc'])
def test_random_corruptions_are_refused_or_train(fmt, tmp_path):
    base = str(tmp_path / 'base')
    make_synthetic(base, num_train=6, num_val=3, image_size=64, seed=2)
    base_cfg = (det_cfg if fmt == 'coco' else seg_cfg)(base)
    model = build_model(copy.deepcopy(base_cfg))
    corrupt = corrupt_coco if fmt == 'coco' else corrupt_voc
    rng = random.Random(2026)
    counts, failures = Counter(), []
    for case in range(CASES[fmt]):
        root = str(tmp_path / f'case{case}')
        shutil.copytree(base, root)
        description = corrupt(rng, root)
        try:
            cfg = pointed_at(base_cfg, fmt, root)
            try:
                check_config_datasets(cfg)
            except DatasetError:
                counts['refused with DatasetError'] += 1
                continue
            try:
                pipeline_and_train(cfg, model)
                counts['passed the check and trained'] += 1
            except Exception:  # noqa: BLE001
                failures.append(f'case {case} ({description}): passed the check, then\n{traceback.format_exc()[-1500:]}')
        except Exception:  # noqa: BLE001
            failures.append(f'case {case} ({description}): the check raised\n{traceback.format_exc()[-1500:]}')
        finally:
            shutil.rmtree(root, ignore_errors=True)
    counts['failed'] = len(failures)
    print(f'\n{fmt}: {dict(counts)}')
    assert not failures, '\n\n'.join(failures[:5])
    assert counts['refused with DatasetError'] > CASES[fmt] // 4 and counts['passed the check and trained'] > 10
