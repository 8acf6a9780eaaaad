"""Run an end-to-end ONNX model from tools/deploy/export_onnx.py --end2end, with numpy, Pillow and
onnxruntime only (no torch, no OpenMMLab): copy this file and the .onnx file to a device.

    python tools/deploy/onnx_infer.py MODEL.onnx --coco ANN.json --img-dir DIR --out results.json
        COCO-format detections for every image of ANN.json (score with pycocotools)
    python tools/deploy/onnx_infer.py MODEL.onnx --img-dir DIR --out-dir MASKS/
        one label PNG per image of DIR (a segmenter), same name with .png
    python tools/deploy/onnx_infer.py MODEL.onnx IMAGE --show OUT.png [--score-thr 0.3]
        a picture of the predictions
    [--threads N]  onnxruntime's intra-op threads (default: its own choice)

The preprocessing (the test pipeline's resize, exact or keeping the aspect ratio as mmcv's
imrescale, and pad, then the data preprocessor's channel order, mean / std and padding) and the
class names travel in the model's metadata (key ``ghost_backbones``), written by the exporter from
the config. This file is deliberately self-contained.
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw

METADATA_KEY = 'ghost_backbones'
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def load_model(path, threads=0):
    """An onnxruntime session and the model's preprocessing spec."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    metadata = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in metadata:
        raise SystemExit(f'{path} has no {METADATA_KEY!r} metadata: export it with export_onnx.py --end2end')
    return session, json.loads(metadata[METADATA_KEY])


def linear_taps(src, dst):
    """OpenCV's INTER_LINEAR source indices and 11-bit fixed-point weights along one axis."""
    scale = 1.0 / (dst / src)
    position = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    fraction = (position - first).astype(np.float32)
    outside = (first < 0) | (first >= src - 1)
    fraction[outside] = 0
    first = np.clip(first, 0, src - 1)
    w0 = np.rint((np.float32(1) - fraction) * np.float32(2048)).astype(np.int64)
    w1 = np.rint(fraction * np.float32(2048)).astype(np.int64)
    return first, np.minimum(first + 1, src - 1), w0, w1


def resize_bilinear(image, width, height):
    """Bilinear resize of a uint8 image (H, W, C) as OpenCV's INTER_LINEAR does it (mmcv's
    default): half-pixel centres, no antialiasing, 11-bit fixed-point weights, the horizontal pass
    in integers, the vertical one rounded as its SIMD code rounds. Equal to cv2.resize when
    shrinking (tested); when enlarging, the first and last rows may differ by 1 where a value is
    exactly halfway."""
    src_h, src_w = image.shape[:2]
    x0, x1, a0, a1 = linear_taps(src_w, width)
    y0, y1, b0, b1 = linear_taps(src_h, height)
    pixels = image.astype(np.int64)
    rows = pixels[:, x0] * a0[None, :, None] + pixels[:, x1] * a1[None, :, None]
    top, bottom = rows[y0] >> 4, rows[y1] >> 4
    out = (((top * b0[:, None, None]) >> 16) + ((bottom * b1[:, None, None]) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def resized_size(width, height, spec):
    """(width, height) of the resized image: mmcv's imresize / imrescale sizes."""
    input_h, input_w = spec['input_size']
    mode = spec['resize']
    if mode == 'exact':
        return tuple(spec.get('resize_size', spec['input_size'])[::-1])
    if mode == 'keep_ratio':
        long_edge, short_edge = max(spec['resize_size']), min(spec['resize_size'])
        factor = min(long_edge / max(height, width), short_edge / min(height, width))
        new_w, new_h = int(width * float(factor) + 0.5), int(height * float(factor) + 0.5)
        if new_w <= input_w and new_h <= input_h:
            return new_w, new_h
    # 'fit' (older exports), or an image of the other orientation than an oblong keep-ratio scale
    factor = min(input_w / width, input_h / height)
    return int(width * factor + 0.5), int(height * factor + 0.5)


def preprocess(rgb, spec):
    """(3, H, W) float32 network input and the (x, y) scale from the original image to it: the
    test pipeline's resize and pad on the BGR image (as mmdet loads it), then the data
    preprocessor's channel order, normalisation and padding."""
    image = rgb[..., ::-1]  # mmcv loads BGR
    height, width = image.shape[:2]
    input_h, input_w = spec['input_size']
    new_w, new_h = resized_size(width, height, spec)
    if (new_w, new_h) != (width, height):
        image = resize_bilinear(image, new_w, new_h)
    pad = spec.get('pad')
    if pad is not None:
        pad_h, pad_w = new_h, new_w
        if pad['mode'] == 'square':
            pad_h = pad_w = max(new_h, new_w)
        elif pad['mode'] == 'size':
            pad_h, pad_w = max(pad['size'][0], new_h), max(pad['size'][1], new_w)
        if pad.get('divisor'):
            pad_h, pad_w = (-(-s // pad['divisor']) * pad['divisor'] for s in (pad_h, pad_w))
        canvas = np.empty((pad_h, pad_w, 3), np.uint8)
        canvas[...] = np.array(pad['value'], np.float64).astype(np.uint8)
        canvas[:new_h, :new_w] = image
        image = canvas
    if spec['channel_order'] == 'rgb':
        image = image[..., ::-1]
    normalized = (image.astype(np.float32) - np.array(spec['mean'], np.float32)) / np.array(spec['std'], np.float32)
    tensor = np.full((3, input_h, input_w), spec.get('pad_value', 0.0), dtype=np.float32)
    rows, cols = min(input_h, normalized.shape[0]), min(input_w, normalized.shape[1])
    tensor[:, :rows, :cols] = normalized[:rows, :cols].transpose(2, 0, 1)
    return tensor, (new_w / width, new_h / height)


def read_rgb(path):
    with Image.open(path) as image:
        return np.asarray(image.convert('RGB'))


def detect(session, spec, rgb):
    """Boxes (x1, y1, x2, y2 in the original image), scores and label indices of one image."""
    tensor, (sx, sy) = preprocess(rgb, spec)
    boxes, scores, labels = session.run(None, {'images': tensor[None]})
    keep = scores[0] > 0
    boxes = boxes[0][keep] / np.array([sx, sy, sx, sy], np.float32)
    if spec.get('clip_boxes', True):  # as mmdet's head clips them (YOLOv3 / YOLOX do not)
        height, width = rgb.shape[:2]
        boxes = np.clip(boxes, 0, [width, height, width, height])
    return boxes, scores[0][keep], labels[0][keep]


def segment(session, spec, rgb):
    """The label map of one image at its own size."""
    tensor, (sx, sy) = preprocess(rgb, spec)
    labels = session.run(None, {'images': tensor[None]})[0][0]
    height, width = rgb.shape[:2]
    labels = labels[:int(height * sy + 0.5), :int(width * sx + 0.5)].astype(np.uint8)
    if labels.shape != (height, width):
        labels = np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))
    return labels


def coco_results(session, spec, ann_file, img_dir):
    """COCO-format detections for every image of ``ann_file``; labels mapped to its category
    ids by class name (as mmdet's CocoMetric does)."""
    with open(ann_file) as f:
        coco = json.load(f)
    by_name = {c['name']: c['id'] for c in coco['categories']}
    missing = [name for name in spec['classes'] if name not in by_name]
    if missing:
        raise SystemExit(f'{ann_file} has no categories named {missing}')
    category_ids = [by_name[name] for name in spec['classes']]
    results = []
    for image in coco['images']:
        boxes, scores, labels = detect(session, spec, read_rgb(osp.join(img_dir, image['file_name'])))
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            results.append(dict(image_id=image['id'], category_id=category_ids[label],
                                bbox=[x1, y1, x2 - x1, y2 - y1], score=score))
    return results


def write_masks(session, spec, img_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    names = sorted(n for n in os.listdir(img_dir) if n.lower().endswith(IMAGE_SUFFIXES))
    for name in names:
        labels = segment(session, spec, read_rgb(osp.join(img_dir, name)))
        Image.fromarray(labels).save(osp.join(out_dir, osp.splitext(name)[0] + '.png'))
    return len(names)


def show(session, spec, image_path, out_path, score_thr):
    rgb = read_rgb(image_path)
    palette = [tuple(c) for c in spec['palette']]
    if spec['task'] == 'segmentation':
        labels = segment(session, spec, rgb)
        colours = np.array(palette, np.float32)[labels]
        picture = Image.fromarray((rgb * 0.5 + colours * 0.5).astype(np.uint8))
    else:
        picture = Image.fromarray(rgb)
        draw = ImageDraw.Draw(picture)
        for box, score, label in zip(*detect(session, spec, rgb)):
            if score < score_thr:
                continue
            colour = palette[label % len(palette)]
            draw.rectangle(box.tolist(), outline=colour, width=2)
            draw.text((box[0] + 2, box[1] + 1), f'{spec["classes"][label]} {score:.2f}', fill=colour)
    picture.save(out_path)
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model')
    parser.add_argument('image', nargs='?', help='one image, with --show')
    parser.add_argument('--coco', help='COCO annotation file: detect every image listed in it')
    parser.add_argument('--img-dir', help='folder of the images')
    parser.add_argument('--out', help='results JSON (with --coco)')
    parser.add_argument('--out-dir', help='folder for label PNGs (segmenters, with --img-dir)')
    parser.add_argument('--show', help='picture of the predictions for IMAGE')
    parser.add_argument('--score-thr', type=float, default=0.3, help='lowest score drawn by --show')
    parser.add_argument('--threads', type=int, default=0)
    args = parser.parse_args(argv)
    session, spec = load_model(args.model, args.threads)
    if args.show:
        if not args.image:
            parser.error('--show needs IMAGE')
        print(show(session, spec, args.image, args.show, args.score_thr))
    elif args.coco:
        if not (args.img_dir and args.out):
            parser.error('--coco needs --img-dir and --out')
        results = coco_results(session, spec, args.coco, args.img_dir)
        with open(args.out, 'w') as f:
            json.dump(results, f)
        print(f'wrote {len(results)} detections to {args.out}')
    elif args.img_dir and args.out_dir:
        print(f'wrote {write_masks(session, spec, args.img_dir, args.out_dir)} label maps to {args.out_dir}')
    else:
        parser.error('give --coco ANN --img-dir DIR --out JSON, --img-dir DIR --out-dir DIR, or IMAGE --show OUT')


if __name__ == '__main__':
    sys.exit(main())
