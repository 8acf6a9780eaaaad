"""GhostNet in mmpretrain: ImageNet classifiers whose logits are timm's, trained and scored by
mmpretrain's own tools, and whose backbones start detectors and segmenters."""
import glob
import importlib
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import timm
import torch

from ghost_backbones import GhostNet
from ghost_backbones.apps.datasets import CLASSES, make_synthetic_classification
from ghost_backbones.apps.deploy import build_from_config
from ghost_backbones.checkpoint import load_checkpoint_file
from ghost_backbones.weights import convert_checkpoint
from helpers import CONFIGS, calibrate_bn, randomize, run_tool, timm_name

IN1K = {arch: osp.join(CONFIGS, 'ghostnet', f'ghostnet-{arch}-1.0x_8xb128_in1k.py') for arch in ('v1', 'v2', 'v3')}
SYNTHETIC = osp.join(CONFIGS, 'synthetic', 'ghostnet-v1-1.0x_synthetic-cls-64.py')


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
def test_converted_timm_checkpoint_gives_timm_logits(arch, tmp_path):
    reference = calibrate_bn(timm.create_model(timm_name(arch)), size=96, seed=4)  # logits of O(1..10)
    source, converted = tmp_path / 'timm.pth', tmp_path / 'mmpretrain.pth'
    torch.save(reference.state_dict(), str(source))
    convert_checkpoint(str(source), str(converted), layout='mmpretrain')
    classifier = build_from_config(IN1K[arch], checkpoint=str(converted))
    assert type(classifier).__name__ == 'ImageClassifier' and classifier.backbone.arch == arch
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        got = classifier(x, mode='tensor')
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_a_classifier_checkpoint_starts_a_detector_backbone(tmp_path):
    classifier = build_from_config(IN1K['v2'])
    randomize(classifier, seed=5)
    path = tmp_path / 'classifier.pth'
    torch.save({'state_dict': classifier.state_dict(), 'meta': {'epoch': 1}}, str(path))
    backbone = GhostNet(arch='v2', out_indices=(6, 9),
                        init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    backbone.init_weights()
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, classifier.backbone.state_dict()[key], msg=key)


@pytest.fixture(scope='module')
def crops(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cls'))
    counts = make_synthetic_classification(root, num_train=200, num_val=50)
    assert counts['train'] > 300 and counts['val'] > 80
    return osp.join(root, 'cls') + '/'


@pytest.mark.slow
def test_mmpretrain_tools_train_and_score_the_synthetic_shapes(crops, tmp_path):
    """mmpretrain's own tools/train.py and tools/test.py (from its wheel) on our config: top-1
    above 90% (three classes: chance is 33%). Then the trained backbone starts a detector."""
    tools = osp.join(osp.dirname(importlib.import_module('mmpretrain').__file__), '.mim', 'tools')
    work_dir = str(tmp_path / 'cls')
    options = [f'train_dataloader.dataset.data_root={crops}', f'val_dataloader.dataset.data_root={crops}',
               f'test_dataloader.dataset.data_root={crops}']
    run_tool(osp.join(tools, 'train.py'), [SYNTHETIC, '--work-dir', work_dir, '--cfg-options', *options],
             osp.join(work_dir, 'train.log'))
    checkpoint = osp.join(work_dir, 'epoch_12.pth')
    log = run_tool(osp.join(tools, 'test.py'), [SYNTHETIC, checkpoint, '--work-dir', work_dir, '--cfg-options', *options],
                   osp.join(work_dir, 'test.log'))
    top1 = float(re.findall(r'accuracy/top1: ([\d.]+)', log)[-1])
    print(f'\nsynthetic shapes, GhostNet 1.0x classifier: top-1 {top1:.1f}%')
    assert top1 > 90, log[-2000:]
    detector_backbone = GhostNet(init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.'))
    detector_backbone.init_weights()
    trained = load_checkpoint_file(checkpoint)['state_dict']  # mmengine's message hub holds HistoryBuffers
    torch.testing.assert_close(detector_backbone.state_dict()['blocks.9.0.conv.weight'],
                               trained['backbone.blocks.9.0.conv.weight'])
    assert json.dumps(top1)
    # mmpretrain's ImageClassificationInferencer, in a process of its own, with the config and by the model-index
    # name (ModelHub knows our classifiers): on the val crops, tools/test.py's top-1
    got = run_inferencer(checkpoint, crops, work_dir)
    assert got['by_config'] == got['by_name']
    correct = [CLASSES.index(osp.basename(osp.dirname(path))) == label for path, label in got['by_config']]
    accuracy = 100 * sum(correct) / len(correct)
    print(f'ImageClassificationInferencer: top-1 {accuracy:.1f}%')
    assert len(correct) == counts_in(crops, 'val') and abs(accuracy - top1) <= 1.0


INFERENCER = '''
import glob, json, sys, warnings
warnings.simplefilter('ignore')
from mmpretrain import ImageClassificationInferencer
config, checkpoint, crops, out = sys.argv[1:]
images = sorted(glob.glob(crops + 'val/*/*.jpg'))
got = {}
for key, model in (('by_config', config), ('by_name', 'ghostnet-v1-1.0x_synthetic-cls-64')):
    inferencer = ImageClassificationInferencer(model, pretrained=checkpoint, device='cpu')
    got[key] = [[path, result['pred_label']] for path, result in zip(images, inferencer(images, batch_size=32))]
json.dump(got, open(out, 'w'))
'''


def run_inferencer(checkpoint, crops, work_dir):
    out = osp.join(work_dir, 'inferencer.json')
    result = subprocess.run([sys.executable, '-c', INFERENCER, SYNTHETIC, checkpoint, crops, out],
                            capture_output=True, text=True, cwd=work_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


def counts_in(crops, split):
    return len(glob.glob(osp.join(crops, split, '*', '*.jpg')))
