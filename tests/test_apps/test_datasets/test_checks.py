"""Dataset checks: each fault named (file, record, value), each valid variant accepted."""
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image

from ghost_backbones.apps.datasets import make_synthetic
from ghost_backbones.apps.datasets.checks import DatasetError, check_coco, check_config_datasets, check_segmentation
from helpers import DET_CONFIG, SEG_CONFIG, det_cfg, seg_cfg


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('small'))
    make_synthetic(root, num_train=8, num_val=4, image_size=64, seed=1)
    return root


@pytest.fixture()
def data(small_data, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(small_data, root)
    return root


def coco_file(root, split='train'):
    return osp.join(root, 'coco', 'annotations', f'instances_{split}.json')


def edit_coco(root, edit, split='train'):
    with open(coco_file(root, split)) as f:
        coco = json.load(f)
    edit(coco)
    with open(coco_file(root, split), 'w') as f:
        json.dump(coco, f)


def check_det(root):
    return check_config_datasets(det_cfg(root))


def check_seg(root, *options):
    return check_config_datasets(seg_cfg(root, *options))


def voc(root, *parts):
    return osp.join(root, 'voc', 'VOC2012', *parts)


def raises(call, *fragments):
    with pytest.raises(DatasetError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return str(info.value)


# ---------------------------------------------------------------------------- COCO faults

@pytest.mark.parametrize('bbox, fragment', [
    ([float('nan'), 1.0, 5.0, 5.0], 'bbox [NaN, 1.0, 5.0, 5.0]; mmdet expects [x, y, width, height], four finite'),
    ([1.0, 1.0, float('inf'), 5.0], 'Infinity'),
    (None, 'bbox null'),
    ([1.0, 2.0, 3.0], 'bbox [1.0, 2.0, 3.0]'),
    (['1', 2, 3, 4], 'four finite numbers'),
    ([150., 10., 40., 20.], 'lies outside the 64x64 image'),
    ([10., 10., -5., 20.], 'non-positive width/height'),
    ([10., 10., 0., 20.], 'non-positive width/height'),
])
def test_bad_boxes_are_named(data, bbox, fragment):
    edit_coco(data, lambda coco: coco['annotations'][3].update(bbox=bbox))
    raises(lambda: check_det(data), fragment, 'instances_train.json', 'annotation id 4 (train_')


@pytest.mark.parametrize('content, fragment', [(b'', 'is an empty file (0 bytes)'),
                                               (b'\xff\xd8\xff\xe0garbage', 'train_000002.jpg is'),
                                               (b'plain text', 'is not an image file')])
def test_bad_image_files_are_named(data, content, fragment):
    with open(osp.join(data, 'coco', 'train', 'train_000002.jpg'), 'wb') as f:
        f.write(content)
    raises(lambda: check_det(data), fragment, "image id 3 ('train_000002.jpg')")


def test_missing_image_is_named(data):
    os.remove(osp.join(data, 'coco', 'train', 'train_000007.jpg'))
    raises(lambda: check_det(data), 'train_000007.jpg does not exist')


def test_image_of_another_size_than_declared(data):
    path = osp.join(data, 'coco', 'train', 'train_000001.jpg')
    Image.open(path).resize((80, 64)).save(path)
    raises(lambda: check_det(data), 'is 80x64 but the annotation file says 64x64')


@pytest.mark.parametrize('content, fragment', [
    (b'null', 'the top level is a NoneType'),
    (b'{"images": null, "annotations": [], "categories": []}', '"images" is null (NoneType); mmdet expects a list'),
    (b'{"images": [], "annotations": [], "categories": []}', '"images" is empty'),
    (b'\xff\xfe{}', 'is not UTF-8 text (byte 0xff at offset 0)'),
    (b'{"images": [', 'is not valid JSON'),
])
def test_broken_annotation_files_are_named(data, content, fragment):
    with open(coco_file(data), 'wb') as f:
        f.write(content)
    raises(lambda: check_det(data), fragment, 'instances_train.json')


def test_empty_annotations(data):
    edit_coco(data, lambda coco: coco.update(annotations=[]))
    raises(lambda: check_det(data), '"annotations" is empty')


def test_unknown_category_and_duplicate_ids(data):
    def edit(coco):
        coco['annotations'][0]['category_id'] = 99
        coco['annotations'][2]['id'] = coco['annotations'][1]['id']
    edit_coco(data, edit)
    raises(lambda: check_det(data), 'unknown category_id 99', 'annotation id 2 is used 2 times')


def test_num_classes_disagreeing_with_the_dataset(data):
    with pytest.raises(DatasetError, match='num_classes=5 in the model head disagrees with the 3 classes'):
        check_config_datasets(det_cfg(data, 'model.bbox_head.num_classes=5'))


# ---------------------------------------------------------------------------- COCO: valid variants

def test_valid_coco_variants_pass(data):
    """Category ids that are not 1..N, crowd annotations, images without annotations, and
    grayscale / RGBA / CMYK images are what mmdet reads without trouble."""
    def edit(coco):
        for category in coco['categories']:
            category['id'] *= 10
        for ann in coco['annotations']:
            ann['category_id'] *= 10
        coco['annotations'][0]['iscrowd'] = 1
        first_image = coco['images'][0]['id']
        coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] != first_image]
    edit_coco(data, edit)
    for name, mode in (('train_000001.jpg', 'L'), ('train_000002.jpg', 'CMYK')):
        path = osp.join(data, 'coco', 'train', name)
        Image.open(path).convert(mode).save(path)
    path = osp.join(data, 'coco', 'train', 'train_000003.jpg')
    Image.open(path).convert('RGBA').save(path.replace('.jpg', '.png'))
    os.replace(path.replace('.jpg', '.png'), path)  # a PNG (with alpha) under a .jpg name: OpenCV reads it
    reports = check_det(data)
    assert [r['split'] for r in reports] == ['train_dataloader', 'val_dataloader']


# ---------------------------------------------------------------------------- segmentation faults

def write_mask(path, labels, mode='P'):
    image = Image.fromarray(labels.astype(np.uint8 if mode != 'I' else np.int32), mode=mode if mode != 'P' else None)
    if mode == 'P':
        image = image.convert('P')
    image.save(path)


def test_mask_of_another_size(data):
    path = voc(data, 'SegmentationClass', 'train_000002.png')
    Image.open(path).resize((32, 32), Image.NEAREST).save(path)
    raises(lambda: check_seg(data), "line 3 ('train_000002')", 'is 32x32 but its image is 64x64')


@pytest.mark.parametrize('mode', ['RGB', 'RGBA'])
def test_colour_masks_are_refused(data, mode):
    path = voc(data, 'SegmentationClass', 'train_000001.png')
    Image.open(path).convert(mode).save(path)
    raises(lambda: check_seg(data), f'is a {mode} image; mmseg expects a label map')


def test_label_beyond_the_classes(data):
    path = voc(data, 'SegmentationClass', 'train_000002.png')
    mask = Image.open(path)
    labels = np.asarray(mask).copy()
    labels[:5, :5] = 7
    bad = Image.fromarray(labels, mode='P')
    bad.putpalette(mask.getpalette())
    bad.save(path)
    raises(lambda: check_seg(data), 'train_000002.png labels [7] outside 0..3')


@pytest.mark.parametrize('content, fragment', [(b'', 'is an empty file'), (b'\x89PNG\r\n\x1a\ngarbage', 'mask'),
                                               (b'text', 'is not an image file')])
def test_broken_masks_are_named(data, content, fragment):
    with open(voc(data, 'SegmentationClass', 'train_000004.png'), 'wb') as f:
        f.write(content)
    raises(lambda: check_seg(data), fragment, 'train_000004.png')


@pytest.mark.parametrize('lines, fragment', [('', 'no samples'), ('train_000000\n\ntrain_000001\n', 'line(s) [2] are blank'),
                                             ('train_000000\nnope\n', "line 2 ('nope'): image"),
                                             (b'\xff\xfe', 'is not UTF-8 text')])
def test_bad_split_files(data, lines, fragment):
    path = voc(data, 'ImageSets', 'Segmentation', 'train.txt')
    with open(path, 'wb') as f:
        f.write(lines if isinstance(lines, bytes) else lines.encode())
    raises(lambda: check_seg(data), fragment, 'train.txt')


# ---------------------------------------------------------------------------- segmentation: valid variants

def test_directory_scan_and_missing_ann_file_are_valid(data):
    """mmseg lists every image under img_path when ann_file is '' (or absent)."""
    reports = check_seg(data, "train_dataloader.dataset.ann_file=''")
    assert reports[0]['images'] == 12  # the scan sees train and val images alike
    cfg = seg_cfg(data)
    del cfg.train_dataloader.dataset['ann_file']
    assert check_config_datasets(cfg)[0]['images'] == 12


def test_reduce_zero_label_keeps_255_as_ignore(tmp_path):
    """With reduce_zero_label mmseg maps 0 to 255 and keeps 255 ignored: labels 0..4 and 255
    are valid for 4 classes; 6 is not (it becomes 5)."""
    images, masks = tmp_path / 'img', tmp_path / 'ann'
    images.mkdir()
    masks.mkdir()
    labels = np.array([[0, 1, 2], [3, 4, 255]], dtype=np.uint8)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(images / 'a.jpg')
    Image.fromarray(labels).save(masks / 'a.png')
    check_segmentation(str(images), str(masks), 4, reduce_zero_label=True)
    with pytest.raises(DatasetError, match=r'labels \[4\] outside 0..3'):
        check_segmentation(str(images), str(masks), 4, reduce_zero_label=False)
    with pytest.raises(DatasetError, match=r'labels \[255\] after reduce_zero_label'):
        check_segmentation(str(images), str(masks), 5, ignore_index=100, reduce_zero_label=True)
    Image.fromarray(np.where(labels == 4, 6, labels).astype(np.uint8)).save(masks / 'a.png')
    with pytest.raises(DatasetError, match=r'labels \[5\] after reduce_zero_label'):
        check_segmentation(str(images), str(masks), 4, reduce_zero_label=True)


def test_ignore_index_of_the_config_is_read(data):
    """The labels the loss ignores (decode_head.ignore_index) are valid; 255 then is not."""
    for name in sorted(os.listdir(voc(data, 'SegmentationClass'))):
        path = voc(data, 'SegmentationClass', name)
        labels = np.asarray(Image.open(path)).copy()
        labels[labels == 255] = 100
        Image.fromarray(labels).save(path)
    raises(lambda: check_seg(data), 'labels [100] outside 0..3 (and 255, the ignore_index of the decode head)')
    assert check_seg(data, 'model.decode_head.ignore_index=100')


def test_grayscale_images_and_l_masks_are_valid(data):
    for name in ('train_000000', 'train_000001'):
        image = voc(data, 'JPEGImages', name + '.jpg')
        Image.open(image).convert('L').save(image)
        mask = voc(data, 'SegmentationClass', name + '.png')
        Image.fromarray(np.asarray(Image.open(mask))).save(mask)  # mode L, same labels
    assert check_seg(data)


def test_check_coco_alone_reports_counts(small_data):
    report = check_coco(coco_file(small_data), osp.join(small_data, 'coco', 'train'))
    assert report['images'] == 8 and report['annotations'] > 8
