"""timm's ImageNet weights by Hugging Face hub name (``timm/ghostnet_100.in1k``, ``hf-hub:...``) in one line, read
from huggingface_hub's cache as data. No test touches the network: each builds the hub cache layout
(``models--owner--repo/refs/main``, ``snapshots/<rev>/<file>``) in a temporary HF_HOME, with HF_HUB_OFFLINE=1."""
import glob
import io
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from safetensors.torch import save_file

from ghost_backbones import GhostNet
from ghost_backbones.checkpoint import CheckpointError, UnsafeCheckpointError
from ghost_backbones.hub_weights import HubWeightsError, cached_weights_file, hub_name, repo_cache_path
from ghost_backbones.weights import CheckpointKeyError, WeightsMismatchError, convert_checkpoint
from helpers import CONFIGS, randomize, timm_model, timm_name

REVISION = '0123456789abcdef0123456789abcdef01234567'
HUB_NAMES = {'v1': 'timm/ghostnet_100.in1k', 'v2': 'hf-hub:timm/ghostnetv2_100.in1k', 'v3': 'timm/ghostnetv3_100.in1k'}


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache under a temporary HF_HOME, offline (constants too: they are read at import)."""
    from huggingface_hub import constants
    cache = tmp_path / 'hf_home' / 'hub'
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf_home'))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    for name in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    return cache


def put_in_cache(cache, repo_id: str, files: dict, revision: str = REVISION, ref: str = 'main'):
    """``files`` (name -> bytes, or a state dict saved as safetensors) as huggingface_hub lays out a download."""
    repo = cache / f'models--{repo_id.replace("/", "--")}'
    (repo / 'refs').mkdir(parents=True, exist_ok=True)
    if ref:
        (repo / 'refs' / ref).write_text(revision)
    snapshot = repo / 'snapshots' / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, dict):
            save_file(content, str(snapshot / name), metadata={'format': 'pt'})
        else:
            (snapshot / name).write_bytes(content)
    return snapshot


def timm_weights(arch: str, width: float = 1.0, seed: int = 0):
    """timm's model with random weights and BN statistics, and its state dict (what timm uploads)."""
    model = randomize(timm_model(arch, width), seed=seed).eval()
    return model, {k: v.contiguous() for k, v in model.state_dict().items()}


def assert_features_equal(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        scale = max(1.0, e.abs().max().item())
        torch.testing.assert_close(g, e, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize('arch', ['v1', 'v2', 'v3'])
def test_hub_name_loads_timms_weights(hf_cache, arch):
    """init_cfg names the weights; the backbone computes timm's features_only maps (blocks 1, 3, 5, 7)."""
    import timm
    _, state = timm_weights(arch, seed=1)
    snapshot = put_in_cache(hf_cache, HUB_NAMES[arch].replace('hf-hub:', ''), {'model.safetensors': state})
    # timm's own features_only model from the same file (timm reads it with its own loader)
    reference = timm.create_model(timm_name(arch), features_only=True, pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(snapshot / 'model.safetensors'))).eval()
    assert reference.feature_info.module_name()[1:] == ['blocks.1', 'blocks.3', 'blocks.5', 'blocks.7']
    ours = GhostNet(arch=arch, out_indices=(1, 3, 5, 7), init_cfg=dict(type='Pretrained', checkpoint=HUB_NAMES[arch]))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)[1:]
        with pytest.raises(AssertionError):  # the check can fail: before loading, the maps differ
            assert_features_equal(ours.eval()(x), expected)
        ours.init_weights()
        assert_features_equal(ours.eval()(x), expected)


@pytest.mark.parametrize('name, expected', [
    ('timm/ghostnet_100.in1k', 'timm/ghostnet_100.in1k'),
    ('hf-hub:timm/ghostnetv2_130.in1k', 'timm/ghostnetv2_130.in1k'),
    ('hf-hub:timm/ghostnet_100.in1k@abc123', 'timm/ghostnet_100.in1k@abc123'),
    ('checkpoints/ghostnet_100.pth', None),  # a checkpoint extension: a local file, even if missing
    ('checkpoints/ghostnet_100.safetensors', None),
    ('ghostnet_100.pth', None),
    ('/abs/owner/repo', None),
    ('a/b/c', None),
    ('existing/folder', None),  # a path that exists is a path
])
def test_which_names_are_hub_names(tmp_path, monkeypatch, name, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'existing' / 'folder').mkdir(parents=True)
    assert hub_name(name) == expected


def test_a_malformed_hf_hub_name_is_an_error():
    with pytest.raises(HubWeightsError, match=r"'hf-hub:ghostnet_100' is not a hub name: expected \[hf-hub:\]<owner>/"):
        GhostNet(init_cfg=dict(type='Pretrained', checkpoint='hf-hub:ghostnet_100')).init_weights()


def test_cache_revisions_and_the_safetensors_preference(hf_cache):
    """refs/main picks the snapshot, ``@rev`` another one; model.safetensors wins over pytorch_model.bin."""
    _, state = timm_weights('v1')
    main = put_in_cache(hf_cache, 'timm/ghostnet_100.in1k', {'model.safetensors': state, 'pytorch_model.bin': b'x'})
    other = put_in_cache(hf_cache, 'timm/ghostnet_100.in1k', {'pytorch_model.bin': b'x'}, revision='f' * 40, ref=None)
    assert cached_weights_file('timm/ghostnet_100.in1k') == str(main / 'model.safetensors')
    assert cached_weights_file('timm/ghostnet_100.in1k', 'f' * 40) == str(other / 'pytorch_model.bin')
    assert repo_cache_path('timm/ghostnet_100.in1k') == str(hf_cache / 'models--timm--ghostnet_100.in1k')


def test_pytorch_model_bin_is_read_as_data_without_batch_counters(hf_cache):
    """No safetensors in the repository: pytorch_model.bin through the data-only loader; a state dict without
    ``num_batches_tracked`` (as many exporters write) loads, as mmengine's load_state_dict allows."""
    reference, state = timm_weights('v1', seed=2)
    state = {k: v for k, v in state.items() if not k.endswith('num_batches_tracked')}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    put_in_cache(hf_cache, 'timm/ghostnet_100.in1k', {'pytorch_model.bin': buffer.getvalue()})
    ours = GhostNet(out_indices=(9,), init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'))
    ours.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_features_equal(ours.eval()(x), [reference.forward_features(x)])


def test_batch_counters_extra_are_accepted_other_keys_are_not(tmp_path):
    _, state = timm_weights('v1')
    state['blocks.3.0.extra_bn.num_batches_tracked'] = torch.tensor(5)
    path = tmp_path / 'extra.safetensors'
    save_file(state, str(path))
    GhostNet(init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    state['blocks.3.0.extra_bn.running_mean'] = torch.zeros(3)
    save_file(state, str(path))
    with pytest.raises(CheckpointKeyError, match=r'unexpected in checkpoint \(1\): blocks.3.0.extra_bn.running_mean'):
        GhostNet(init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


@pytest.mark.parametrize('held, asked, says', [
    (('v2', 1.0), ('v1', 1.0), 'holds GhostNet v2 1x weights'),
    (('v2', 1.3), ('v2', 1.0), 'holds GhostNet v2 1.3x weights'),
    (('v1', 1.0), ('v3', 1.0), 'holds GhostNet v1 1x weights'),
])
def test_weights_of_another_arch_or_width_are_refused_naming_both(hf_cache, held, asked, says):
    _, state = timm_weights(*held)
    put_in_cache(hf_cache, 'timm/some_ghostnet.in1k', {'model.safetensors': state})
    model = GhostNet(arch=asked[0], widen_factor=asked[1],
                     init_cfg=dict(type='Pretrained', checkpoint='timm/some_ghostnet.in1k'))
    with pytest.raises(WeightsMismatchError) as info:
        model.init_weights()
    message = str(info.value)
    assert says in message and f'asks for GhostNet {asked[0]} {asked[1]:g}x' in message, message
    assert 'timm/some_ghostnet.in1k' in message and 'recognised from its keys and shapes' in message


def test_offline_and_not_cached_says_where_and_what_to_do(hf_cache):
    model = GhostNet(init_cfg=dict(type='Pretrained', checkpoint='timm/ghostnet_100.in1k'))
    with pytest.raises(HubWeightsError) as info:
        model.init_weights()
    message = str(info.value)
    assert 'timm/ghostnet_100.in1k' in message
    assert str(hf_cache / 'models--timm--ghostnet_100.in1k') in message
    assert 'HF_HUB_OFFLINE=1' in message and 'network access' in message
    assert 'init_cfg=None' in message and 'local file' in message


HOSTILE = '''
import sys
from ghost_backbones import GhostNet
from ghost_backbones.checkpoint import UnsafeCheckpointError
try:
    GhostNet(init_cfg=dict(type='Pretrained', checkpoint=sys.argv[1])).init_weights()
    print('LOADED')
except UnsafeCheckpointError as error:
    print('REFUSED', error)
'''


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_a_hostile_pytorch_model_bin_in_the_cache_is_refused(tmp_path):
    """In a fresh process that finds the cache through HF_HOME alone: the pickle's os.system never runs."""
    marker = tmp_path / 'ran'
    cache = tmp_path / 'hf_home' / 'hub'
    hostile = io.BytesIO()
    torch.save({'conv_stem.weight': torch.zeros(16, 3, 3, 3), 'meta': RunsCode(marker)}, hostile)  # a torch zip
    assert b'posix' in hostile.getvalue() or b'system' in hostile.getvalue()
    put_in_cache(cache, 'timm/ghostnet_100.in1k', {'pytorch_model.bin': hostile.getvalue()})
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE')}
    env.update(HF_HOME=str(tmp_path / 'hf_home'), HF_HUB_OFFLINE='1')
    for name in ('timm/ghostnet_100.in1k', 'hf-hub:timm/ghostnet_100.in1k'):
        result = subprocess.run([sys.executable, '-c', HOSTILE, name], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert 'REFUSED' in result.stdout and 'pytorch_model.bin' in result.stdout, result.stdout + result.stderr[-2000:]
        assert 'posix.system' in result.stdout or 'os.system' in result.stdout, result.stdout
        assert not marker.exists()
    assert issubclass(UnsafeCheckpointError, CheckpointError)


def test_a_local_safetensors_file(tmp_path):
    reference, state = timm_weights('v2', seed=3)
    path = tmp_path / 'ghostnetv2.safetensors'
    save_file(state, str(path))
    ours = GhostNet(arch='v2', out_indices=(9,), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    ours.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_features_equal(ours.eval()(x), [reference.forward_features(x)])
    fake = tmp_path / 'fake.safetensors'
    fake.write_bytes(b'not safetensors at all')
    with pytest.raises(CheckpointError, match='fake.safetensors is named .safetensors but is not a safetensors file'):
        GhostNet(init_cfg=dict(type='Pretrained', checkpoint=str(fake))).init_weights()


def test_convert_weights_tool_takes_hub_names(hf_cache, tmp_path, repo_root):
    """tools/convert_weights.py --to mmpretrain: backbone and classifier head of a hub name, for ImageClassifier."""
    _, state = timm_weights('v1', seed=4)
    put_in_cache(hf_cache, 'timm/ghostnet_100.in1k', {'model.safetensors': state})
    out = tmp_path / 'mmpretrain.pth'
    result = subprocess.run([sys.executable, f'{repo_root}/tools/convert_weights.py', '--to', 'mmpretrain',
                             'hf-hub:timm/ghostnet_100.in1k', str(out)], capture_output=True, text=True,
                            env={**os.environ, 'HF_HOME': str(hf_cache.parent), 'HF_HUB_OFFLINE': '1'})
    assert result.returncode == 0, result.stderr[-2000:]
    converted = torch.load(str(out), weights_only=True)['state_dict']
    torch.testing.assert_close(converted['head.layers.1.fc.weight'], state['classifier.weight'])
    torch.testing.assert_close(converted['head.layers.0.fc.weight'], state['conv_head.weight'].flatten(1))
    torch.testing.assert_close(converted['backbone.blocks.6.3.ghost1.primary_conv.1.running_var'],
                               state['blocks.6.3.ghost1.primary_conv.1.running_var'])
    backbone = tmp_path / 'backbone.pth'
    convert_checkpoint('timm/ghostnet_100.in1k', str(backbone))
    assert set(torch.load(str(backbone), weights_only=True)['state_dict']) == set(GhostNet().state_dict())


def test_cfg_options_name_hub_weights(hf_cache):
    """``--cfg-options``: another checkpoint in a real config; Pretrained in a synthetic config, whose
    ``init_cfg=None`` takes a dict only with ``_delete_`` (mmengine's merge rule)."""
    from ghost_backbones.apps.deploy import build_from_config
    from ghost_backbones.apps.runtime import parse_cfg_options
    real = Config.fromfile(osp.join(CONFIGS, 'ghostnet', 'retinanet_ghostnet-1.0x_fpn_1x_coco.py'))
    real.merge_from_dict(parse_cfg_options(['model.backbone.init_cfg.checkpoint=hf-hub:timm/ghostnetv2_100.in1k']))
    assert real.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='hf-hub:timm/ghostnetv2_100.in1k')
    _, state = timm_weights('v1', seed=5)
    put_in_cache(hf_cache, 'timm/ghostnet_100.in1k', {'model.safetensors': state})
    options = parse_cfg_options(['model.backbone.init_cfg._delete_=True', 'model.backbone.init_cfg.type=Pretrained',
                                 'model.backbone.init_cfg.checkpoint=timm/ghostnet_100.in1k'])
    model = build_from_config(osp.join(CONFIGS, 'synthetic', 'yolov3_ghostnet-1.0x_synthetic-160.py'), cfg_options=options)
    model.backbone.init_weights()
    torch.testing.assert_close(model.backbone.state_dict()['blocks.8.3.ghost2.cheap_operation.1.running_mean'],
                               state['blocks.8.3.ghost2.cheap_operation.1.running_mean'])


# Real configs whose published counterparts start from ImageNet weights, and the timm weights they name.
IMAGENET_STARTS = {
    'deeplabv3_ghostnet-1.0x-d8_4xb4-20k_voc12aug-512x512.py', 'fpn_ghostnet-1.0x_4xb4-20k_voc12aug-512x512.py',
    'fpn_ghostnet-1.0x_4xb4-40k_voc12aug-512x512.py', 'retinanet_ghostnet-1.0x_fpn_1x_coco.py',
    'rtmdet_ghostnet-1.0x_8xb32-300e_coco.py', 'yolov3_ghostnet-1.0x_8xb24-320-300e_coco.py',
    'yolov3_ghostnet-1.0x_8xb24-ms-416-300e_coco.py'}
TIMM_WEIGHTS = {('v1', 1.0): 'timm/ghostnet_100.in1k', ('v2', 1.0): 'timm/ghostnetv2_100.in1k',
                ('v2', 1.3): 'timm/ghostnetv2_130.in1k', ('v2', 1.6): 'timm/ghostnetv2_160.in1k',
                ('v3', 1.0): 'timm/ghostnetv3_100.in1k'}


def pretrained_entries(init_cfg) -> list:
    entries = init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []
    return [e for e in entries if e.get('type') == 'Pretrained']


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(CONFIGS, 'ghostnet', '*.py'))), ids=osp.basename)
def test_real_configs_name_the_timm_weights_of_their_backbone(path):
    backbone = Config.fromfile(path).model.backbone
    pretrained = pretrained_entries(backbone.get('init_cfg'))
    if osp.basename(path) not in IMAGENET_STARTS:
        assert not pretrained, 'its published counterpart trains from scratch'
        return
    assert len(pretrained) == 1
    assert pretrained[0].checkpoint == TIMM_WEIGHTS[backbone.get('arch', 'v1'), backbone.get('widen_factor', 1.0)]


@pytest.mark.parametrize('path', sorted(p for p in glob.glob(osp.join(CONFIGS, 'synthetic', '*.py'))
                                        if not osp.basename(p).startswith('_')), ids=osp.basename)
def test_synthetic_configs_train_from_scratch(path):
    """Nothing to download: no Pretrained entry anywhere in the model."""
    def walk(node):
        if isinstance(node, dict):
            assert node.get('type') != 'Pretrained', node
            assert not (isinstance(node.get('pretrained'), str) and node['pretrained']), node
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)
    cfg = Config.fromfile(path)
    walk(cfg.model.to_dict())
    assert not cfg.get('load_from')
