"""What the startup hook does for mmengine's config system, in fresh interpreters that never import
ghost_backbones (as mmdet's / mmseg's / mmpretrain's own tools read a config): ``ghost_backbones::``
bases keep their own default scope, and mmengine's hub finds our configs from the editable install."""
import json
import os.path as osp
import subprocess
import sys

from helpers import ROOT

SCOPES = '''
import json, sys
from mmengine.config import Config
cfg = Config.fromfile(sys.argv[1], import_custom_modules=False)
scopes = set()
def walk(value):
    if isinstance(value, dict):
        if 'type' in value and value.get('_scope_') is not None:
            scopes.add(value['_scope_'])
        [walk(v) for v in value.values()]
    elif isinstance(value, (list, tuple)):
        [walk(v) for v in value]
walk(cfg.to_dict())
print(json.dumps(dict(scopes=sorted(scopes), default_scope=cfg.get('default_scope'),
                      imported='ghost_backbones' in sys.modules)))
'''


def scopes_of(config_text, tmp_path):
    path = tmp_path / 'user.py'
    path.write_text(config_text)
    result = subprocess.run([sys.executable, '-c', SCOPES, str(path)], capture_output=True, text=True,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_ghost_backbones_base_keeps_its_default_scope(tmp_path):
    """mmengine 0.10.7 tagged the base's typed dicts ``_scope_='ghost_backbones'``: now its own ``mmdet``."""
    got = scopes_of("_base_ = 'ghost_backbones::synthetic/ssdlite_ghostnet-1.0x_synthetic-160.py'\n", tmp_path)
    assert got == dict(scopes=['mmdet'], default_scope='mmdet', imported=False)
    got = scopes_of("_base_ = 'ghost_backbones::synthetic/ghostnet-v1-1.0x_synthetic-cls-64.py'\n", tmp_path)
    assert got == dict(scopes=['mmpretrain'], default_scope='mmpretrain', imported=False)


def test_a_base_without_default_scope_takes_the_inheriting_configs(tmp_path):
    """A data-only base (no default_scope) is tagged with no scope: the user's config's default scope applies."""
    got = scopes_of("_base_ = ['ghost_backbones::synthetic/_synthetic_voc.py']\n"
                    "train_dataloader = {{_base_.synthetic.train_dataloader}}\ndefault_scope = 'mmseg'\n", tmp_path)
    assert got == dict(scopes=[], default_scope='mmseg', imported=False)


def test_mmengine_hub_get_config_from_the_editable_install(tmp_path):
    """``mmengine.hub.get_config`` resolves the package through its own reference to
    ``get_installed_path``: from an editable install it looked in site-packages (issue 24, part 4)."""
    code = ('from mmengine.hub import get_config\n'
            'cfg = get_config("ghost_backbones::synthetic/fpn_ghostnet-1.0x_synthetic-160.py")\n'
            'print(cfg.filename, cfg.default_scope)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    filename, scope = result.stdout.split()[-2:]
    assert osp.realpath(filename) == osp.join(ROOT, 'configs', 'synthetic', 'fpn_ghostnet-1.0x_synthetic-160.py')
    assert scope == 'mmseg'


BY_NAME = '''
import json, warnings
warnings.simplefilter('ignore')
import numpy as np
from mmdet.apis import DetInferencer
from mmseg.apis import MMSegInferencer
from mmpretrain import ImageClassificationInferencer, list_models
got = {}
# first: mmpretrain's inferencer builds its pipeline in the current default scope, which the others set
got['cls_names'] = list_models('ghostnet*')
classifier = ImageClassificationInferencer('ghostnet-v1-1.0x_synthetic-cls-64', device='cpu')
got['cls'] = [type(classifier.model.backbone).__name__,
             len(classifier(np.zeros((64, 64, 3), np.uint8))[0]['pred_scores'])]
detector = DetInferencer(model='ssdlite_ghostnet-1.0x_synthetic-160', device='cpu', show_progress=False)  # scope mmdet
got['det'] = [detector.cfg.filename, type(detector.model.backbone).__name__,
              len(detector(np.zeros((160, 160, 3), np.uint8), no_save_vis=True)['predictions'])]
got['mmdet_own'] = DetInferencer._get_repo_or_mim_dir('mmdet')  # mmdet's own names are looked up first
try:
    DetInferencer(model='fpn_ghostnet-1.0x_synthetic-160', device='cpu')
except ValueError as error:
    got['wrong_scope'] = str(error)
try:
    DetInferencer(model='no_such_model', device='cpu')
except ValueError as error:
    got['unknown'] = str(error)
segmenter = MMSegInferencer(model='fpn_ghostnet-1.0x_synthetic-160', device='cpu')
got['seg'] = [segmenter.cfg.filename, type(segmenter.model.backbone).__name__,
              list(segmenter(np.zeros((160, 160, 3), np.uint8))['predictions'].shape)]
print(json.dumps(got))
'''


def test_inferencers_find_our_model_index_names_in_their_own_scope(tmp_path):
    """``DetInferencer(model='<our name>')`` (scope mmdet), ``MMSegInferencer`` (mmseg) and mmpretrain's
    ``ImageClassificationInferencer`` / ``list_models`` find our configs by model-index name. mmengine read
    only the index of the package named by the scope: ours only with ``scope='ghost_backbones'``, which is
    then the default registry scope, where mmdet's ``PackDetInputs`` is not found (issue 24)."""
    result = subprocess.run([sys.executable, '-c', BY_NAME], capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    synthetic = osp.join(ROOT, 'configs', 'synthetic')
    assert got['det'] == [osp.join(synthetic, 'ssdlite_ghostnet-1.0x_synthetic-160.py'), 'GhostNet', 1]
    assert got['seg'] == [osp.join(synthetic, 'fpn_ghostnet-1.0x_synthetic-160.py'), 'GhostNet', [160, 160]]
    assert 'a mmseg config of ghost_backbones' in got['wrong_scope']
    assert 'use an inferencer of mmseg' in got['wrong_scope']
    assert got['unknown'] == 'Cannot find model: no_such_model in mmdet'
    assert got['cls_names'] == ['ghostnet-v1-1.0x_8xb128_in1k', 'ghostnet-v1-1.0x_synthetic-cls-64',
                                'ghostnet-v2-1.0x_8xb128_in1k', 'ghostnet-v3-1.0x_8xb128_in1k']
    assert got['cls'] == ['GhostNet', 3]
