"""End-to-end deployment: the post-processing in the ONNX graph is mmdet's, the standalone runner
needs numpy, Pillow and onnxruntime only, and its scores are those of tools/test.py."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ghost_backbones.apps.datasets import make_synthetic
from ghost_backbones.apps.deploy import build_from_config, export_end2end
from ghost_backbones.apps.end2end import NonMaxSuppression, end2end
from helpers import CONFIGS, DET_CONFIG, SEG_CONFIG, calibrate_bn, tool

YOLO_CONFIG = osp.join(CONFIGS, 'synthetic', 'yolov3_ghostnet-1.0x_synthetic-160.py')
RETINANET_CONFIG = osp.join(CONFIGS, 'ghostnet', 'retinanet_ghostnet-1.0x_fpn_1x_coco.py')
RUNNER = tool('deploy', 'onnx_infer.py')


class NMSOnly(torch.nn.Module):
    def forward(self, boxes, scores):
        return NonMaxSuppression.apply(boxes, scores, 5, 0.5, 0.2)


def test_onnx_nms_selects_what_the_eager_nms_selects(tmp_path):
    import onnxruntime
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 60, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + torch.rand(2, 60, 2, generator=gen) * 30 + 1], -1)
    scores = torch.rand(2, 3, 60, generator=gen)
    path = str(tmp_path / 'nms.onnx')
    torch.onnx.export(NMSOnly(), (boxes, scores), path, input_names=['boxes', 'scores'], dynamo=False, opset_version=17)
    expected = NMSOnly()(boxes, scores)
    got = onnxruntime.InferenceSession(path).run(None, {'boxes': boxes.numpy(), 'scores': scores.numpy()})[0]
    assert len(expected) > 10 and got.tolist() == expected.tolist()


def detector_batch(size):
    from mmdet.structures import DetDataSample
    height, width = size
    images = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    samples = [DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1., 1.),
                                           pad_shape=(height, width), batch_input_shape=(height, width)))
               for _ in range(2)]
    return images, samples


@pytest.mark.parametrize('config, size', [(DET_CONFIG, (160, 160)), (YOLO_CONFIG, (160, 160)),
                                          (RETINANET_CONFIG, (192, 256))], ids=['ssdlite', 'yolov3', 'retinanet'])
def test_post_processing_in_the_graph_is_mmdets(config, size):
    """The end-to-end module's detections are those of mmdet's own predict (rescale off)."""
    model = build_from_config(config)
    calibrate_bn(model.backbone, size=size[0])  # random weights, data statistics: varied scores
    model.eval()
    images, samples = detector_batch(size)
    with torch.no_grad():
        boxes, scores, labels = end2end(model)(images)
        theirs = model.predict(images, samples, rescale=False)
    for image, result in enumerate(theirs):
        expected = result.pred_instances
        keep = scores[image] > 0
        assert keep.sum() == len(expected.scores) > 20, (int(keep.sum()), len(expected.scores))
        torch.testing.assert_close(scores[image][keep], expected.scores, atol=1e-5, rtol=0)
        matched = matched_detections((boxes[image][keep], scores[image][keep], labels[image][keep]),
                                     (expected.bboxes, expected.scores, expected.labels))
        # equal scores at the max_per_img cut may swap places; everything else is the same detection
        assert matched >= 0.98 * len(expected.scores), (matched, len(expected.scores))


def matched_detections(ours, theirs) -> int:
    """How many of ``theirs`` (boxes, scores, labels) have their own match in ``ours``: same
    label, score within 1e-5, box within 1e-3."""
    free = list(range(len(ours[1])))
    matched = 0
    for box, score, label in zip(*theirs):
        for k in free:
            if ours[2][k] == label and abs(ours[1][k] - score) < 1e-5 and (ours[0][k] - box).abs().max() < 1e-3:
                free.remove(k)
                matched += 1
                break
    return matched


DEEPLAB_CONFIG = osp.join(CONFIGS, 'synthetic', 'deeplabv3_ghostnet-1.0x-d8_synthetic-160.py')


@pytest.mark.parametrize('config, size', [(DET_CONFIG, None), (YOLO_CONFIG, None), (RETINANET_CONFIG, (192, 256)),
                                          (SEG_CONFIG, None), (DEEPLAB_CONFIG, None)],
                         ids=['ssdlite', 'yolov3', 'retinanet', 'fpn', 'deeplabv3'])
def test_onnxruntime_gives_the_traced_modules_outputs(config, size, tmp_path):
    """Every end-to-end graph, in onnxruntime at batch 2 (dynamic), against PyTorch: the same
    label maps, or the same detections (ties may swap places)."""
    import onnxruntime
    path = str(tmp_path / 'model.onnx')
    torch.manual_seed(0)
    module, spec = export_end2end(config, None, path, size)
    images = torch.randn(2, 3, *spec['input_size'], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = module(images)
    got = onnxruntime.InferenceSession(path).run(None, {'images': images.numpy()})
    if spec['task'] == 'segmentation':
        assert (got[0] == expected.numpy()).mean() > 0.999
        return
    boxes, scores, labels = (torch.from_numpy(g) for g in got)
    for image in range(2):
        keep = scores[image] > 0
        assert keep.sum() == (expected[1][image] > 0).sum() > 0
        ours = (boxes[image][keep], scores[image][keep], labels[image][keep])
        theirs = tuple(t[image][expected[1][image] > 0] for t in expected)
        assert matched_detections(ours, theirs) >= 0.98 * len(theirs[1])


HIDE = '''
import runpy, sys
BLOCKED = ('torch', 'torchvision', 'mmcv', 'mmdet', 'mmseg', 'mmengine', 'ghost_backbones', 'cv2', 'timm')
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Hide())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def run_runner(*args):
    """tools/deploy/onnx_infer.py in a process where importing torch / OpenMMLab fails."""
    result = subprocess.run([sys.executable, '-c', HIDE, RUNNER, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiny'))
    make_synthetic(root, num_train=4, num_val=3, image_size=160, seed=5)
    return root


def test_runner_needs_only_numpy_pillow_and_onnxruntime(tiny_data, tmp_path):
    det, seg = str(tmp_path / 'det.onnx'), str(tmp_path / 'seg.onnx')
    export_end2end(DET_CONFIG, None, det)
    export_end2end(SEG_CONFIG, None, seg)
    coco = osp.join(tiny_data, 'coco')
    out = tmp_path / 'results.json'
    run_runner(det, '--coco', osp.join(coco, 'annotations', 'instances_val.json'), '--img-dir', osp.join(coco, 'val'),
               '--out', out, '--threads', 1)
    results = json.loads(out.read_text())
    assert {r['image_id'] for r in results} == {1, 2, 3} and {r['category_id'] for r in results} <= {1, 2, 3}
    assert all(len(r['bbox']) == 4 and 0 < r['score'] <= 1 for r in results)

    images = osp.join(tiny_data, 'voc', 'VOC2012', 'JPEGImages')
    run_runner(seg, '--img-dir', images, '--out-dir', tmp_path / 'masks')
    masks = sorted(os.listdir(tmp_path / 'masks'))
    assert len(masks) == 7 and all(np.asarray(Image.open(tmp_path / 'masks' / m)).shape == (160, 160) for m in masks)

    picture = tmp_path / 'shown.png'
    run_runner(det, osp.join(coco, 'val', 'val_000000.jpg'), '--show', picture, '--score-thr', 0.0)
    assert Image.open(picture).size == (160, 160)


def coco_ap(ann_file, results_file) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    truth = COCO(ann_file)
    evaluation = COCOeval(truth, truth.loadRes(str(results_file)), 'bbox')
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0])


def export(*args):
    result = subprocess.run([sys.executable, tool('deploy', 'export_onnx.py'), *map(str, args)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_onnx_detector_scores_like_tools_test(trained_ssdlite, synthetic, tmp_path, capsys):
    """COCO AP of the ONNX detector (pycocotools on the runner's results) within 0.005 of
    tools/test.py's on the same checkpoint; the INT8 model is scored the same way."""
    model = tmp_path / 'ssdlite.onnx'
    export('--config', DET_CONFIG, '--checkpoint', trained_ssdlite['checkpoint'], '--end2end', '--out', model,
           '--int8', '--calib-images', 32, '--cfg-options', *trained_ssdlite['options'])
    ann = osp.join(synthetic, 'coco', 'annotations', 'instances_val.json')
    scores = {}
    for name in ('ssdlite.onnx', 'ssdlite.int8.onnx'):
        out = tmp_path / f'{name}.json'
        run_runner(tmp_path / name, '--coco', ann, '--img-dir', osp.join(synthetic, 'coco', 'val'), '--out', out)
        scores[name] = coco_ap(ann, out)
    reference = trained_ssdlite['metrics']['coco/bbox_mAP']
    with capsys.disabled():
        print(f'\nbox AP: tools/test.py {reference:.3f}, ONNX FP32 {scores["ssdlite.onnx"]:.3f}, '
              f'ONNX INT8 {scores["ssdlite.int8.onnx"]:.3f}')
    assert abs(scores['ssdlite.onnx'] - reference) <= 0.005
    assert scores['ssdlite.int8.onnx'] > reference - 0.1


def miou(predicted_dir, truth_dir, names, num_classes=4) -> float:
    from ghost_backbones.apps.benchmark import mean_iou
    return mean_iou(((np.asarray(Image.open(osp.join(predicted_dir, n + '.png'))),
                      np.asarray(Image.open(osp.join(truth_dir, n + '.png')))) for n in names), num_classes)


@pytest.mark.slow
def test_onnx_segmenter_miou_like_tools_test(trained_fpn, synthetic, tmp_path, capsys):
    model = tmp_path / 'fpn.onnx'
    export('--config', SEG_CONFIG, '--checkpoint', trained_fpn['checkpoint'], '--end2end', '--out', model)
    voc = osp.join(synthetic, 'voc', 'VOC2012')
    names = open(osp.join(voc, 'ImageSets', 'Segmentation', 'val.txt')).read().split()
    images = tmp_path / 'val_images'
    images.mkdir()
    for name in names:
        os.symlink(osp.join(voc, 'JPEGImages', name + '.jpg'), images / (name + '.jpg'))
    run_runner(model, '--img-dir', images, '--out-dir', tmp_path / 'masks')
    ours = miou(tmp_path / 'masks', osp.join(voc, 'SegmentationClass'), names)
    reference = trained_fpn['metrics']['mIoU']
    with capsys.disabled():
        print(f'\nmIoU: tools/test.py {reference:.2f}, ONNX {ours:.2f}')
    assert abs(ours - reference) <= 0.3
