"""OpenMMLab's own clients on the session's trained checkpoints, run the way a user runs them (issue 24):
each in a subprocess, through the upstream entry points shipped in the wheels (``mmdet/.mim/tools``,
``mmseg/.mim/tools``, the ``mmdet.apis`` / ``mmseg.apis`` inferencers), no upstream file changed.

Several clients share one process (an upstream script runs as ``__main__`` with its own ``sys.argv``,
as ``python script.py ...`` runs it), one process per group:

* mmdet's tools: ``print_config``, ``get_flops``, ``browse_dataset``, ``test.py --out`` then
  ``analyze_results`` and ``confusion_matrix`` on its predictions;
* mmdet's inference APIs: ``DetInferencer`` (config + weights; weights alone of a trusted checkpoint, the
  config read from it; a model-index name), ``init_detector`` + ``inference_detector``: their boxes are those
  ``tools/test.py`` dumped;
* mmseg: ``MMSegInferencer`` (config + weights; a model-index name) over the val images, whose mIoU is
  ``tools/test.py``'s; ``test.py --out`` (one mask per val image) and ``confusion_matrix``;
  ``print_config``; ``tools/analysis/model_info.py`` in place of mmseg's ``get_flops`` (broken upstream:
  README, troubleshooting; so is mmseg's ``browse_dataset``);
* ``publish_model`` of mmdet and mmseg where ghost_backbones is not imported (``GHOST_BACKBONES_STARTUP=0``):
  our checkpoints are plain data.

mmseg's ``init_model`` + ``inference_model`` against ``tools/test.py`` is in test_clients.py, mmpretrain's
``ImageClassificationInferencer`` in test_configs/test_mmpretrain.py (on the classifier trained there)."""
import hashlib
import importlib
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers import DET_CONFIG, ROOT, SEG_CONFIG

pytestmark = pytest.mark.slow

DET_NAME = osp.splitext(osp.basename(DET_CONFIG))[0]
SEG_NAME = osp.splitext(osp.basename(SEG_CONFIG))[0]
NUM_VAL = 50  # the session's synthetic set


def tools(package: str, *parts: str) -> str:
    """A script shipped in an upstream wheel: tools('mmdet', 'misc', 'print_config.py')."""
    return osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim', 'tools', *parts)


# Shared by every process: run an upstream script as __main__ with its argv, its printed output returned.
PRELUDE = r'''
import contextlib, io, json, os, os.path as osp, runpy, sys, time, traceback, warnings
warnings.simplefilter('ignore')
import torch
torch.set_num_threads(2)
args = json.loads(sys.argv[1])
out = {}
def script(path, *argv):
    sys.argv = [path, *map(str, argv)]
    buffer = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        runpy.run_path(path, run_name='__main__')
    out.setdefault('seconds', {})[osp.basename(path)] = round(time.perf_counter() - start, 1)
    return buffer.getvalue()
def save():
    json.dump(out, open(args['result'], 'w'))
def test_metrics(work_dir):  # what the Runner's LoggerHook wrote after the test epoch: <work_dir>/<time>/<time>.json
    import glob
    path, = glob.glob(osp.join(work_dir, '*', '*.json'))
    return json.load(open(path))
'''

MMDET_TOOLS = PRELUDE + r'''
config, checkpoint, options, work = args['config'], args['checkpoint'], args['options'], args['work']
printed = script(args['print_config'], config, '--cfg-options', *options)
out['print_config'] = dict(ghostnet="type='GhostNet'" in printed, data_root=args['data_root'] in printed)
printed = script(args['get_flops'], config, '--num-images', 1, '--cfg-options', *options)
out['get_flops'] = [line for line in printed.splitlines() if line.startswith(('Flops:', 'Params:', 'Input shape:'))]
from mmengine.analysis.print_helper import _format_size
out['params_formatted'] = _format_size(args['params'])
script(args['browse_dataset'], config, '--output-dir', osp.join(work, 'browse'), '--not-show',
       '--cfg-options', *options, 'train_dataloader.dataset.indices=4')
script(args['test'], config, checkpoint, '--out', osp.join(work, 'results.pkl'), '--work-dir', osp.join(work, 'test'),
       '--cfg-options', *options)
out['test_metrics'] = test_metrics(osp.join(work, 'test'))
# analyze_results scores each image in a pool of 4 new processes: on the first 8 of the dumped predictions
from mmengine.fileio import dump, load
dump(load(osp.join(work, 'results.pkl'))[:8], osp.join(work, 'results_8.pkl'))
script(args['analyze_results'], config, osp.join(work, 'results_8.pkl'), osp.join(work, 'analyze'), '--topk', 3,
       '--cfg-options', *options)
script(args['confusion_matrix'], config, osp.join(work, 'results.pkl'), osp.join(work, 'confusion'),
       '--cfg-options', *options)
# the matrix itself, with the script's own function and defaults (score 0.3, IoU 0.5)
from mmengine.config import Config, DictAction
from mmdet.registry import DATASETS
functions = runpy.run_path(args['confusion_matrix'], run_name='confusion_matrix')
cfg = Config.fromfile(config)
cfg.merge_from_dict({key: DictAction._parse_iterable(value) for key, value in (o.split('=', 1) for o in options)})
dataset = DATASETS.build(cfg.test_dataloader.dataset)
matrix = functions['calculate_confusion_matrix'](dataset, load(osp.join(work, 'results.pkl')), score_thr=0.3,
                                                 tp_iou_thr=0.5)
out['confusion_matrix'] = matrix.tolist()
save()
'''

MMDET_APIS = PRELUDE + r'''
import numpy as np
from mmdet.apis import DetInferencer, inference_detector, init_detector
from ghost_backbones.checkpoint import trusted_checkpoints
config, checkpoint, images = args['config'], args['checkpoint'], args['images']
def boxes(instances):
    keep = np.asarray(instances['scores']) >= 0.3
    return dict(bboxes=np.asarray(instances['bboxes'])[keep].round(2).tolist(),
                labels=np.asarray(instances['labels'])[keep].tolist(),
                scores=np.asarray(instances['scores'])[keep].round(4).tolist())
def infer(**kwargs):
    inferencer = DetInferencer(device='cpu', show_progress=False, **kwargs)
    results = inferencer(images, no_save_vis=True, batch_size=len(images))['predictions']
    return dict(classes=list(inferencer.model.dataset_meta['classes']), boxes=[boxes(r) for r in results])
out['config_and_weights'] = infer(model=config, weights=checkpoint)
with trusted_checkpoints(checkpoint):  # the config saved in the checkpoint: only from a trusted one
    out['weights_alone'] = infer(weights=checkpoint)
out['model_index_name'] = infer(model=args['name'], weights=checkpoint)  # scope mmdet, the default
model = init_detector(config, checkpoint, device='cpu')
results = inference_detector(model, images)
out['init_detector'] = dict(classes=list(model.dataset_meta['classes']), boxes=[boxes(dict(
    bboxes=r.pred_instances.bboxes.numpy(), labels=r.pred_instances.labels.numpy(),
    scores=r.pred_instances.scores.numpy())) for r in results])
save()
'''

MMSEG = PRELUDE + r'''
import numpy as np
config, checkpoint, options, work = args['config'], args['checkpoint'], args['options'], args['work']
from mmseg.apis import MMSegInferencer
for key, model in (('config_and_weights', config), ('model_index_name', args['name'])):
    inferencer = MMSegInferencer(model=model, weights=checkpoint, device='cpu')
    predictions = inferencer(args['images'], batch_size=10)['predictions']
    folder = osp.join(work, key)
    os.makedirs(folder)
    for image, mask in zip(args['images'], predictions):
        np.save(osp.join(folder, osp.splitext(osp.basename(image))[0] + '.npy'), np.asarray(mask, np.uint8))
    out[key] = folder
printed = script(args['print_config'], config, '--cfg-options', *options)
out['print_config'] = dict(ghostnet="type='GhostNet'" in printed, data_root=args['data_root'] in printed)
out['model_info'] = script(args['model_info'], '--config', config, '--sizes', 160)
script(args['test'], config, checkpoint, '--out', osp.join(work, 'masks'), '--work-dir', osp.join(work, 'test'),
       '--cfg-options', *options)
out['test_metrics'] = test_metrics(osp.join(work, 'test'))
try:  # broken upstream with a dataset whose classes come from the config (README, troubleshooting)
    script(args['confusion_matrix'], config, osp.join(work, 'masks'), osp.join(work, 'confusion'),
           '--cfg-options', *options)
    out['confusion_matrix'] = None
except KeyError as error:
    out['confusion_matrix'] = [repr(error), traceback.extract_tb(error.__traceback__)[-1].line]
save()
'''

PUBLISH = PRELUDE + r'''
ours = lambda: sorted(m for m in sys.modules if m.split('.')[0] == 'ghost_backbones')  # the startup hook's is not
out['imported_at_start'] = ours()
for key, (publisher, checkpoint, target) in args['jobs'].items():
    script(publisher, checkpoint, target)
time.sleep(1)  # both scripts rename their output with a `mv` they do not wait for
out['imported_at_end'] = ours()
save()
'''


def run_group(code: str, arguments: dict, folder, env=None) -> dict:
    """One process; its recorded outcomes (and the seconds it took, under 'process_seconds')."""
    arguments = dict(arguments, result=str(folder / 'result.json'))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, '-c', code, json.dumps(arguments)], capture_output=True, text=True,
                            cwd=str(folder), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    recorded = json.loads((folder / 'result.json').read_text())
    recorded['process_seconds'] = time.perf_counter() - start
    return recorded


def val_images(synthetic, layout: str, count: int):
    if layout == 'coco':
        with open(osp.join(synthetic, 'coco', 'annotations', 'instances_val.json')) as f:
            names = sorted(image['file_name'] for image in json.load(f)['images'])
        return [osp.join(synthetic, 'coco', 'val', name) for name in names[:count]]
    voc = osp.join(synthetic, 'voc', 'VOC2012')
    names = open(osp.join(voc, 'ImageSets', 'Segmentation', 'val.txt')).read().split()
    return [osp.join(voc, 'JPEGImages', name + '.jpg') for name in names[:count]]


def metafile_entry(name: str) -> dict:
    with open(osp.join(ROOT, 'configs', 'synthetic', 'metafile.yml')) as f:
        return next(model for model in yaml.safe_load(f)['Models'] if model['Name'] == name)


@pytest.fixture(scope='module')
def detector_tools(trained_ssdlite, synthetic, tmp_path_factory):
    folder = tmp_path_factory.mktemp('mmdet_tools')
    arguments = dict(config=DET_CONFIG, checkpoint=trained_ssdlite['checkpoint'], options=trained_ssdlite['options'],
                     work=str(folder), data_root=osp.join(synthetic, 'coco') + '/',
                     params=metafile_entry(DET_NAME)['Metadata']['Parameters'],
                     print_config=tools('mmdet', 'misc', 'print_config.py'),
                     get_flops=tools('mmdet', 'analysis_tools', 'get_flops.py'),
                     browse_dataset=tools('mmdet', 'analysis_tools', 'browse_dataset.py'),
                     test=tools('mmdet', 'test.py'),
                     analyze_results=tools('mmdet', 'analysis_tools', 'analyze_results.py'),
                     confusion_matrix=tools('mmdet', 'analysis_tools', 'confusion_matrix.py'))
    return dict(run_group(MMDET_TOOLS, arguments, folder), work=folder)


def test_mmdet_print_config_and_get_flops(detector_tools):
    assert detector_tools['print_config'] == dict(ghostnet=True, data_root=True)
    printed = dict(line.split(':', 1) for line in detector_tools['get_flops'])
    assert printed['Input shape'].strip() == '(160, 160)', printed
    assert printed['Params'].strip() == detector_tools['params_formatted'], printed  # the metafile's count
    assert float(printed['Flops'].strip().rstrip('GM')) > 0


def test_mmdet_browse_dataset_draws_the_training_images(detector_tools):
    drawn = sorted((detector_tools['work'] / 'browse').iterdir())
    assert len(drawn) == 4
    for path in drawn:
        assert Image.open(path).size == (160, 160)


def test_mmdet_test_out_analyze_results_and_confusion_matrix(detector_tools, trained_ssdlite):
    """``test.py --out`` scores as the session's tools/test.py did and dumps every val image's predictions;
    ``analyze_results`` draws the 3 best and 3 worst of 8; the confusion matrix of the trained detector has most
    of each class on its diagonal."""
    work = detector_tools['work']
    metrics = detector_tools['test_metrics']
    assert metrics['coco/bbox_mAP'] == pytest.approx(trained_ssdlite['metrics']['coco/bbox_mAP'], abs=1e-3)
    with open(work / 'results.pkl', 'rb') as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL and all('pred_instances' in r for r in results)
    for kind in ('good', 'bad'):
        drawn = list((work / 'analyze' / kind).iterdir())
        assert len(drawn) == 3 and all(Image.open(p).size[0] >= 160 for p in drawn)
    assert Image.open(work / 'confusion' / 'confusion_matrix.png').size[0] > 100
    matrix = np.array(detector_tools['confusion_matrix'])  # 3 classes + background
    assert matrix.shape == (4, 4)
    for label in range(3):  # each class is most often taken for itself (the rest of a row: misses, last column)
        assert matrix[label, :3].argmax() == label and matrix[label, label] > 0, matrix


def comparable(predictions: dict):
    return predictions['classes'], [(b['labels'], np.round(b['bboxes'], 0).tolist()) for b in predictions['boxes']]


def test_mmdet_inference_apis_give_tools_tests_boxes(trained_ssdlite, synthetic, detector_tools, tmp_path):
    """DetInferencer with config and weights, with the weights alone of a trusted checkpoint (the config from
    the checkpoint: it loads where our classes are not imported: the checkpoint is plain data) and with the model-index name
    (scope mmdet); init_detector + inference_detector: the same boxes, classes from the checkpoint, and
    the boxes test.py dumped for those images."""
    images = val_images(synthetic, 'coco', 6)
    got = run_group(MMDET_APIS, dict(config=DET_CONFIG, checkpoint=trained_ssdlite['checkpoint'], images=images,
                                     name=DET_NAME), tmp_path)
    reference = comparable(got['config_and_weights'])
    assert reference[0] == ['circle', 'square', 'triangle']
    assert sum(len(labels) for labels, _ in reference[1]) >= len(images)  # a trained detector finds shapes
    for key in ('weights_alone', 'model_index_name', 'init_detector'):
        assert comparable(got[key]) == reference, key
    with open(detector_tools['work'] / 'results.pkl', 'rb') as f:
        dumped = {osp.basename(r['img_path']): r['pred_instances'] for r in pickle.load(f)}
    for image, predicted in zip(images, got['config_and_weights']['boxes']):
        instances = dumped[osp.basename(image)]
        keep = instances['scores'].numpy() >= 0.3
        np.testing.assert_allclose(np.asarray(predicted['bboxes']).reshape(-1, 4),
                                   instances['bboxes'].numpy()[keep], atol=0.02)
        assert predicted['labels'] == instances['labels'].numpy()[keep].tolist()


@pytest.fixture(scope='module')
def segmenter_clients(trained_fpn, synthetic, tmp_path_factory):
    folder = tmp_path_factory.mktemp('mmseg_clients')
    images = val_images(synthetic, 'voc', NUM_VAL)
    arguments = dict(config=SEG_CONFIG, checkpoint=trained_fpn['checkpoint'], options=trained_fpn['options'],
                     work=str(folder), images=images, name=SEG_NAME,
                     data_root=osp.join(synthetic, 'voc', 'VOC2012'),
                     print_config=tools('mmseg', 'misc', 'print_config.py'), test=tools('mmseg', 'test.py'),
                     confusion_matrix=tools('mmseg', 'analysis_tools', 'confusion_matrix.py'),
                     model_info=osp.join(ROOT, 'tools', 'analysis', 'model_info.py'))
    return dict(run_group(MMSEG, arguments, folder), work=folder, images=images)


def test_mmseg_inferencer_scores_like_tools_test(segmenter_clients, trained_fpn, synthetic):
    """MMSegInferencer (config + weights, and the model-index name): the same masks, at the images' size, whose
    mIoU over the val images is tools/test.py's within 1 point."""
    from ghost_backbones.apps.benchmark import mean_iou
    voc = osp.join(synthetic, 'voc', 'VOC2012')
    pairs = []
    for image in segmenter_clients['images']:
        name = osp.splitext(osp.basename(image))[0]
        mask = np.load(osp.join(segmenter_clients['config_and_weights'], name + '.npy'))
        np.testing.assert_array_equal(mask, np.load(osp.join(segmenter_clients['model_index_name'], name + '.npy')))
        truth = np.asarray(Image.open(osp.join(voc, 'SegmentationClass', name + '.png')))
        assert mask.shape == truth.shape == (160, 160)
        pairs.append((mask, truth))
    ours, reference = mean_iou(pairs, num_classes=4), trained_fpn['metrics']['mIoU']
    print(f'\nmIoU: tools/test.py {reference:.2f}, MMSegInferencer {ours:.2f}')
    assert abs(ours - reference) <= 1.0


def test_mmseg_test_out_print_config_and_model_info(segmenter_clients, trained_fpn):
    """mmseg's ``test.py --out DIR`` writes one label map per val image (and scores as the session did);
    ``print_config`` shows the model and data; in place of mmseg's broken ``get_flops``, the package's
    ``model_info.py`` gives the metafile's parameter and FLOP counts."""
    assert segmenter_clients['test_metrics']['mIoU'] == pytest.approx(trained_fpn['metrics']['mIoU'], abs=0.01)
    masks = sorted((segmenter_clients['work'] / 'masks').glob('*.png'))
    assert len(masks) == NUM_VAL
    labels = np.asarray(Image.open(masks[0]))
    assert labels.shape == (160, 160) and set(np.unique(labels)) <= {0, 1, 2, 3}
    assert segmenter_clients['print_config'] == dict(ghostnet=True, data_root=True)
    metadata = metafile_entry(SEG_NAME)['Metadata']
    line = next(line for line in segmenter_clients['model_info'].splitlines() if '@160' in line)
    assert f"{metadata['Parameters'] / 1e6:.2f} M params" in line and f"{metadata['FLOPs'] / 1e9:.3f} GFLOPs" in line



def test_mmseg_confusion_matrix_is_broken_upstream_as_the_readme_says(segmenter_clients):
    """mmseg 1.2.2's confusion_matrix.py reads the classes from the dataset class's ``METAINFO``, empty for a
    BaseSegDataset whose classes the config gives (our synthetic configs): README, troubleshooting. Should
    mmseg fix it, this fails: then its matrix is the one to check."""
    assert segmenter_clients['confusion_matrix'] == ["KeyError('classes')", "n = len(dataset.METAINFO['classes'])"]


def test_publish_model_without_the_plugin(trained_ssdlite, trained_fpn, tmp_path):
    """mmdet's and mmseg's ``publish_model.py`` (plain ``torch.load``, weights_only by default in torch >= 2.6)
    in a process where ghost_backbones is not imported, its startup hook off: they failed on our
    checkpoints' HistoryBuffer before they were plain data. The published file is named by its sha256 (mmdet:
    of the output, mmseg: of the input), keeps the weights, and leaves out the optimizer."""
    jobs = {'mmdet': (tools('mmdet', 'model_converters', 'publish_model.py'), trained_ssdlite['checkpoint'],
                      str(tmp_path / 'ssdlite.pth')),
            'mmseg': (tools('mmseg', 'misc', 'publish_model.py'), trained_fpn['checkpoint'], str(tmp_path / 'fpn.pth'))}
    got = run_group(PUBLISH, dict(jobs=jobs), tmp_path, env=dict(os.environ, GHOST_BACKBONES_STARTUP='0'))
    assert got['imported_at_start'] == got['imported_at_end'] == []
    for package, (_, source, _) in jobs.items():
        deadline = time.time() + 10
        pattern = f'{"ssdlite" if package == "mmdet" else "fpn"}-*.pth'
        while not list(tmp_path.glob(pattern)) and time.time() < deadline:
            time.sleep(0.2)
        published, = tmp_path.glob(pattern)
        hashed = published if package == 'mmdet' else source
        assert hashlib.sha256(open(hashed, 'rb').read()).hexdigest()[:8] == published.stem.split('-')[-1]
        loaded = torch.load(str(published), map_location='cpu', weights_only=True)
        original = torch.load(source, map_location='cpu', weights_only=True)
        assert 'optimizer' not in loaded and 'state_dict' in loaded
        assert set(loaded['state_dict']) == set(original['state_dict'])
        for key, value in original['state_dict'].items():
            assert torch.equal(loaded['state_dict'][key], value), key
