"""Run an end-to-end ONNX model from tools/deploy/export_onnx.py --end2end, with numpy, Pillow and
onnxruntime only (no torch, no OpenMMLab): copy this file and the .onnx file to a device.

    python tools/deploy/onnx_infer.py MODEL.onnx --coco ANN.json --img-dir DIR --out results.json
        COCO-format detections for every image of ANN.json (score with pycocotools)
    python tools/deploy/onnx_infer.py MODEL.onnx --img-dir DIR --out-dir MASKS/
        one label PNG per image of DIR (a segmenter), same name with .png
    python tools/deploy/onnx_infer.py MODEL.onnx IMAGE --show OUT.png [--score-thr 0.3]
        a picture of the predictions
    [--threads N]  onnxruntime's intra-op threads (default: its own choice)

The preprocessing (input size and resize mode, mean / std, channel order, padding) and the class
names travel in the model's metadata (key ``ghost_backbones``), written by the exporter from
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


def resize_bilinear(image, width, height):
    """Bilinear resize with half-pixel centres and no antialiasing, as OpenCV's INTER_LINEAR
    (mmcv's default), so that the network sees what it saw in mmdet / mmseg."""
    src_h, src_w = image.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * src_h / height - 0.5, 0, src_h - 1)
    xs = np.clip((np.arange(width) + 0.5) * src_w / width - 0.5, 0, src_w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, src_h - 1), np.minimum(x0 + 1, src_w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    image = image.astype(np.float32)
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return np.clip(np.rint(top * (1 - wy) + bottom * wy), 0, 255).astype(np.uint8)


def preprocess(rgb, spec):
    """(3, H, W) float32 network input and the (x, y) scale from the original image to it."""
    image = rgb if spec['channel_order'] == 'rgb' else rgb[..., ::-1]
    height, width = image.shape[:2]
    input_h, input_w = spec['input_size']
    if spec['resize'] == 'exact':
        new_w, new_h = input_w, input_h
    else:  # fit inside the input, keeping the aspect ratio (mmcv's rescale), then pad
        scale = min(input_w / width, input_h / height)
        new_w, new_h = int(width * scale + 0.5), int(height * scale + 0.5)
    if (new_w, new_h) != (width, height):
        image = resize_bilinear(image, new_w, new_h)
    normalized = (image.astype(np.float32) - np.array(spec['mean'], np.float32)) / np.array(spec['std'], np.float32)
    tensor = np.full((3, input_h, input_w), spec.get('pad_value', 0.0), dtype=np.float32)
    tensor[:, :new_h, :new_w] = normalized.transpose(2, 0, 1)
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
