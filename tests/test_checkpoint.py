"""Checkpoints are read as data on torch's own weights-only unpickler: what must keep loading
(plain mmengine / numpy 1 / timm checkpoints, resuming), what the package writes (plain data in any
process), and trust by content. The hostile files are in test_checkpoint_attacks.py."""
import asyncio
import collections
import copy
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ghost_backbones  # noqa: F401  (the compat fixes)
from ghost_backbones.checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint_file,
                                        trusted_checkpoints)
from hostile_checkpoints import Reduce, forged_array, runs, with_pickle, zip_bytes

PLAIN_TORCH_LOAD = ('import sys, torch\n'
                    'checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=True)\n'
                    'assert "ghost_backbones" not in sys.modules\n'
                    'print("PLAIN", sorted(checkpoint))')


def plain_torch_load(path):
    """``torch.load(weights_only=True)`` in a process that never imports the package."""
    result = subprocess.run([sys.executable, '-c', PLAIN_TORCH_LOAD, str(path)], capture_output=True, text=True,
                            env=dict(os.environ, GHOST_BACKBONES_STARTUP='0'))
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def tiny_runner_script(work_dir, max_epochs, resume):
    return f'''
import torch, torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

class Net(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=((out.squeeze(1) - labels) ** 2).mean()) if mode == 'loss' else out

xs = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
runner = Runner(
    model=Net(), work_dir={str(work_dir)!r},
    train_dataloader=dict(dataset=[dict(inputs=x, labels=x.sum()) for x in xs], batch_size=8,
                          sampler=dict(type='DefaultSampler', shuffle=True), collate_fn=dict(type='default_collate')),
    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
    param_scheduler=dict(type='MultiStepLR', milestones=[2], by_epoch=True),
    train_cfg=dict(by_epoch=True, max_epochs={max_epochs}),
    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
    randomness=dict(seed=0), resume={resume}, default_scope='mmengine')
runner.train()
'''


def test_checkpoint_of_a_process_without_the_plugin_loads_and_resumes(tmp_path):
    """What plain mmengine writes (getattr(HistoryBuffer, 'min') and friends, numpy arrays and
    scalars) loads as data with no opt-in, and a Runner resumes from it."""
    plain = subprocess.run([sys.executable, '-c', tiny_runner_script(tmp_path, 2, False)], capture_output=True,
                           text=True, env=dict(os.environ, GHOST_BACKBONES_STARTUP='0'))
    assert plain.returncode == 0, plain.stderr[-2000:]
    checkpoint = tmp_path / 'epoch_2.pth'
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint))
    assert any('getattr' in name for name in unsafe), unsafe  # written the plain mmengine way
    assert 'ghost_backbones' not in checkpoint.read_bytes().decode('latin1')

    loaded = load_checkpoint_file(str(checkpoint))
    assert loaded['meta']['epoch'] == 2 and len(loaded['message_hub']['log_scalars']['train/loss'].data[0]) == 8

    resumed = subprocess.run([sys.executable, '-c', 'import ghost_backbones\n' + tiny_runner_script(tmp_path, 3, True)
                              + 'print("RESUMED", runner.epoch, runner.iter, '
                              'len(runner.message_hub.get_scalar("train/loss").data[0]))'],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'RESUMED 3 12 12' in resumed.stdout  # 2 epochs of 4 iterations restored, a third one run
    # what the plugin writes names nothing beyond torch's allow-list: plain torch.load reads it anywhere
    ours = tmp_path / 'epoch_3.pth'
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(ours)) == []
    assert 'PLAIN' in plain_torch_load(ours)
    assert isinstance(load_checkpoint_file(str(ours))['message_hub']['log_scalars']['train/loss'], dict)


def test_plain_mmengine_resumes_from_what_the_plugin_writes(tmp_path):
    """mmengine without the plugin (torch.load's default weights_only=True) resumes from our
    checkpoint; it skips the loss history, which it cannot recognise, with a warning."""
    ours = subprocess.run([sys.executable, '-c', 'import ghost_backbones\n' + tiny_runner_script(tmp_path, 2, False)],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr[-2000:]
    plain = subprocess.run([sys.executable, '-c', tiny_runner_script(tmp_path, 3, True) + 'print("RESUMED", runner.epoch)'],
                           capture_output=True, text=True, env=dict(os.environ, GHOST_BACKBONES_STARTUP='0'))
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert 'RESUMED 3' in plain.stdout and 'is not HistoryBuffer, just skip resuming it' in plain.stdout + plain.stderr


@pytest.mark.parametrize('runner_class', ['Runner', 'FlexibleRunner'])
def test_resume_never_runs_the_config_text_of_a_checkpoint(tmp_path, runner_class):
    """Fix 7 of compat: mmengine's resume evaluated ``meta['config']`` as a Python config (code
    execution from a file read as data); the checkpoint still resumes. FlexibleRunner loads
    through its strategy, not ``Runner.load_checkpoint``."""
    trained = subprocess.run([sys.executable, '-c', 'import ghost_backbones\n' + tiny_runner_script(tmp_path, 2, False)],
                             capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-2000:]
    marker = tmp_path / 'ran'
    checkpoint = load_checkpoint_file(str(tmp_path / 'epoch_2.pth'))
    checkpoint['meta']['config'] = f"__import__('os').system('touch {marker}')\nx = 1\n"
    torch.save(checkpoint, str(tmp_path / 'epoch_2.pth'))  # plain data still: the loader accepts it
    script = tiny_runner_script(tmp_path, 3, True).replace('import Runner', f'import {runner_class} as Runner')
    resumed = subprocess.run([sys.executable, '-c', f'import ghost_backbones\n{script}print("RESUMED", runner.epoch, '
                              'runner.iter, type(runner).__name__)'], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f'RESUMED 3 12 {runner_class}' in resumed.stdout and not marker.exists()


INFERENCER_SCRIPT = r'''
import json, sys, torch, ghost_backbones
from mmdet.apis import DetInferencer
from ghost_backbones.checkpoint import CheckpointError
config, out = sys.argv[1], {}
for path in sys.argv[2:]:
    for kwargs in (dict(weights=path), dict(model=config, weights=path)):
        key = f'{path} {"with config" if "model" in kwargs else "alone"}'
        try:
            inferencer = DetInferencer(device='cpu', show_progress=False, **kwargs)
            predictions = inferencer(torch.zeros(160, 160, 3, dtype=torch.uint8).numpy())['predictions']
            out[key] = ['built', inferencer.model.backbone.conv_stem.weight.flatten()[:4].tolist(), len(predictions)]
        except CheckpointError as error:
            out[key] = [type(error).__name__, str(error)]
print(json.dumps(out))
'''


def test_an_inferencer_builds_from_a_checkpoints_config_only_when_trusted(tmp_path):
    """Fix 8 of compat: mmengine's inferencers given weights alone build the model from the config saved
    in the checkpoint (its text evaluated as Python; read as data, its types, files and URLs still act:
    ``type='os.system'``). Untrusted, that is refused naming the file and what to do, whatever the config
    holds, and nothing runs; with ``model=`` the same weights infer; a trusted checkpoint infers alone."""
    from helpers import DET_CONFIG
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    cfg = Config.fromfile(DET_CONFIG)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    marker = tmp_path / 'ran'
    hostile_cfg = copy.deepcopy(cfg)
    hostile_cfg.merge_from_dict({'model.data_preprocessor': dict(type='os.system', command=f'touch {marker}')})
    good, trusted, in_text, as_data, empty = (tmp_path / f'{name}.pth' for name in ('good', 'trusted', 'in_text',
                                                                                 'as_data', 'empty'))
    for path, text in ((good, cfg.pretty_text), (trusted, cfg.pretty_text), (empty, '# nothing\n'),
                       (in_text, f"__import__('os').system('touch {marker}')\n" + cfg.pretty_text),
                       (as_data, hostile_cfg.pretty_text)):
        torch.save({'state_dict': model.state_dict(), 'meta': {'cfg': text}, 'note': path.name}, str(path))
    env = dict(os.environ, GHOST_BACKBONES_TRUSTED_CHECKPOINTS=os.pathsep.join(map(str, (trusted, empty))))
    result = subprocess.run([sys.executable, '-c', INFERENCER_SCRIPT, DET_CONFIG, *map(str, (good, trusted, in_text,
                            as_data, empty))], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    out = {os.path.basename(key): value for key, value in json.loads(result.stdout.strip().splitlines()[-1]).items()}
    weights = model.backbone.conv_stem.weight.flatten()[:4].tolist()
    for name in ('good', 'trusted', 'in_text', 'as_data'):
        assert out[f'{name}.pth with config'] == ['built', weights, 1], name
    assert out['trusted.pth alone'] == ['built', weights, 1]
    # a trusted checkpoint whose config is empty: mmengine would read the path again for one
    assert out['empty.pth alone'][0] == 'CheckpointError' and 'empty.pth is empty' in out['empty.pth alone'][1]
    for name in ('good', 'in_text', 'as_data'):
        kind, message = out[f'{name}.pth alone']
        assert kind == 'UnsafeCheckpointError' and f'{name}.pth: given weights alone' in message, (name, message)
        assert 'model=<config.py>' in message and 'GHOST_BACKBONES_TRUSTED_CHECKPOINTS=sha256:' in message
    assert not marker.exists()


def test_numpy_1_names_load(tmp_path):
    """A checkpoint written under numpy < 2 names numpy.core.multiarray: plain data, it loads."""
    data = zip_bytes({'history': np.arange(4, dtype=np.float32), 'seed': np.int64(7)})
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickle_bytes = archive.read('archive/data.pkl')
    assert b'numpy._core.multiarray' in pickle_bytes
    path = with_pickle(tmp_path / 'numpy1.pth', pickle_bytes.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    loaded = load_checkpoint_file(str(path))
    np.testing.assert_array_equal(loaded['history'], np.arange(4, dtype=np.float32))
    assert loaded['history'].dtype == np.float32 and loaded['seed'] == 7 and type(loaded['seed']) is np.int64


def test_torch_allow_list_is_left_exactly_as_it_was(tmp_path):
    """The user's own allow-list is restored after each load, and a user entry under one of our
    names (numpy's real ndarray) does not stand in for our checked rebuilder meanwhile."""
    path = tmp_path / 'arrays.pth'
    torch.save({'a': np.ones(3)}, str(path))
    hostile = tmp_path / 'object_array.pth'
    torch.save({'a': forged_array(np.dtype('O'), b'\x41' * 16)}, str(hostile))
    torch.serialization.add_safe_globals([np.ndarray, collections.defaultdict])
    try:
        before = sorted(map(str, torch.serialization.get_safe_globals()))
        np.testing.assert_array_equal(load_checkpoint_file(str(path))['a'], np.ones(3))
        with pytest.raises(UnsafeCheckpointError, match="numpy dtype 'O8'"):
            load_checkpoint_file(str(hostile))
        assert sorted(map(str, torch.serialization.get_safe_globals())) == before
    finally:
        torch.serialization.clear_safe_globals()


def test_timm_checkpoint_loads(tmp_path):
    import timm
    model = timm.create_model('ghostnet_100', pretrained=False)
    path = tmp_path / 'ghostnet_100.pth'
    torch.save(model.state_dict(), str(path))
    loaded = load_checkpoint_file(str(path))
    assert set(loaded) == set(model.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


URL_LOADER = r'''
import json, sys
import torch
import ghost_backbones
from ghost_backbones import GhostNet
from ghost_backbones.checkpoint import UnsafeCheckpointError
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
outcome = {}
for url in sys.argv[1:]:
    for how, load in (('CheckpointLoader', lambda: CheckpointLoader.load_checkpoint(url)),
                      ('load_checkpoint', lambda: load_checkpoint(torch.nn.Linear(1, 1), url)),
                      ('init_cfg', lambda: GhostNet(init_cfg=dict(type='Pretrained', checkpoint=url)).init_weights())):
        try:
            result = load()
            outcome[f'{how} {url}'] = 'loaded ' + json.dumps(result['value'].tolist() if isinstance(result, dict) else 0)
        except UnsafeCheckpointError as error:
            outcome[f'{how} {url}'] = 'refused: ' + str(error)
        except Exception as error:
            outcome[f'{how} {url}'] = f'{type(error).__name__}: {error}'
print(json.dumps(outcome))
'''


def test_checkpoints_from_urls_are_read_as_data(tmp_path, file_server):
    root, base = file_server
    marker = tmp_path / 'pwned_over_http'
    torch.save({'meta': runs(f'touch {marker}')}, str(root / 'evil.pth'))
    torch.save({'value': torch.arange(3.)}, str(root / 'good.pth'))
    mmengine_home = tmp_path / 'mmengine_home'
    mmengine_home.mkdir()
    (mmengine_home / 'open_mmlab.json').write_text(json.dumps({'evil_model': f'{base}/evil.pth'}))
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'), MMENGINE_HOME=str(mmengine_home))
    urls = [f'{base}/evil.pth', 'open-mmlab://evil_model', 'openmmlab://evil_model', f'{base}/good.pth']
    result = subprocess.run([sys.executable, '-c', URL_LOADER, *urls], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    for key, value in outcome.items():
        if 'evil' in key:
            assert value.startswith('refused: ') and 'posix.system' in value and 'evil.pth' in value, (key, value)
    assert outcome[f'CheckpointLoader {base}/good.pth'] == 'loaded [0.0, 1.0, 2.0]'
    assert not marker.exists()
    # downloaded into torch's hub cache, as torch.hub would, without being unpickled
    assert (tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'evil.pth').exists()


def test_every_mmengine_scheme_is_ours():
    from mmengine.runner.checkpoint import CheckpointLoader
    prefixes = {'', 'http://', 'https://', 'pavi://', 'modelzoo://', 'torchvision://', 'open-mmlab://',
                'openmmlab://', 'mmcls://', r'(\S+\:)?s3://', r'(\S+\:)?petrel://'}
    assert prefixes <= set(CheckpointLoader._schemes)
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader.__module__ == 'ghost_backbones.checkpoint_sources', prefix
        assert loader.__name__.startswith('load_from_')  # mmengine logs "Loads checkpoint by <name[10:]> backend"


def old_style_checkpoint(path, marker=None):
    """Needs trust: a global outside the data allow-list (here os.system when ``marker``)."""
    obj = {'state_dict': {'w': torch.ones(2)}}
    if marker:
        obj['meta'] = runs(f'touch {marker}')
    else:
        obj['meta'] = Reduce((collections.defaultdict, (list,)))
    torch.save(obj, str(path))
    return path


def test_trust_by_content_hash_and_by_absolute_path(tmp_path, monkeypatch):
    path = old_style_checkpoint(tmp_path / 'old.pth')
    with pytest.raises(UnsafeCheckpointError, match='collections.defaultdict'):
        load_checkpoint_file(str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv('GHOST_BACKBONES_TRUSTED_CHECKPOINTS', digest)
    assert load_checkpoint_file(str(path))['state_dict']['w'].sum() == 2
    monkeypatch.setenv('GHOST_BACKBONES_TRUSTED_CHECKPOINTS', str(path))
    assert load_checkpoint_file(str(path))['state_dict']['w'].sum() == 2
    # sha256:HEX too, among other entries of the os.pathsep-separated list
    monkeypatch.setenv('GHOST_BACKBONES_TRUSTED_CHECKPOINTS', os.pathsep.join(['sha256:' + '0' * 64, f'sha256:{digest}']))
    assert load_checkpoint_file(str(path))['state_dict']['w'].sum() == 2
    # the same name with other content is not the trusted file
    monkeypatch.setenv('GHOST_BACKBONES_TRUSTED_CHECKPOINTS', digest)
    old_style_checkpoint(tmp_path / 'other.pth')
    (tmp_path / 'other.pth').write_bytes((tmp_path / 'other.pth').read_bytes() + b'\0')
    with pytest.raises(CheckpointError):
        load_checkpoint_file(str(tmp_path / 'other.pth'))


def test_relative_trusted_entries_are_refused(tmp_path, monkeypatch):
    path = old_style_checkpoint(tmp_path / 'old.pth')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('GHOST_BACKBONES_TRUSTED_CHECKPOINTS', 'old.pth')
    with pytest.raises(CheckpointError, match="'old.pth'.*not an absolute path"):
        load_checkpoint_file(str(path))


def test_a_trusted_symlink_trusts_its_target_as_resolved_once(tmp_path, monkeypatch):
    trusted_target = old_style_checkpoint(tmp_path / 'trusted.pth')
    other = old_style_checkpoint(tmp_path / 'other.pth')
    link = tmp_path / 'link.pth'
    link.symlink_to(trusted_target)
    monkeypatch.setenv('GHOST_BACKBONES_TRUSTED_CHECKPOINTS', str(link))
    assert load_checkpoint_file(str(link))['state_dict']['w'].sum() == 2
    link.unlink()
    link.symlink_to(other)  # re-pointed after the trust was resolved
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(str(link))


def test_trust_in_code_is_scoped(tmp_path):
    path = old_style_checkpoint(tmp_path / 'old.pth')
    with trusted_checkpoints(str(path)):
        assert load_checkpoint_file(str(path))['state_dict']['w'].sum() == 2
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(str(path))


def test_trust_does_not_leak_from_a_suspended_generator_or_a_task(tmp_path):
    path = old_style_checkpoint(tmp_path / 'old.pth')

    def trusting():
        with trusted_checkpoints(str(path)):
            yield load_checkpoint_file(str(path))  # inside the block: trusted
            yield 'suspended inside the block'

    generator = trusting()
    assert next(generator)['state_dict']['w'].sum() == 2
    assert next(generator) == 'suspended inside the block'
    with pytest.raises(UnsafeCheckpointError):  # the caller, while the generator is suspended in the block
        load_checkpoint_file(str(path))
    generator.close()

    async def main():
        with trusted_checkpoints(str(path)):
            task = asyncio.get_running_loop().create_task(asyncio.sleep(0, result=None))
            background = asyncio.get_running_loop().run_in_executor(None, load_checkpoint_file, str(path))
            await task
            with pytest.raises(UnsafeCheckpointError):  # another thread, started inside the block
                await background

        async def later():
            load_checkpoint_file(str(path))

        with trusted_checkpoints(str(path)):
            spawned = asyncio.get_running_loop().create_task(later())  # copies the context inside the block
        with pytest.raises(UnsafeCheckpointError):
            await spawned

    asyncio.run(main())


def test_the_bytes_checked_are_the_bytes_unpickled(tmp_path, monkeypatch):
    """A trusted file swapped for a hostile one right after the trust decision: the hostile
    content is never unpickled (the file is read once)."""
    from ghost_backbones import checkpoint as module
    path = old_style_checkpoint(tmp_path / 'trusted.pth')
    marker = tmp_path / 'pwned_by_swap'
    hostile = old_style_checkpoint(tmp_path / 'hostile.pth', marker=marker)
    decide = module.trusted_by

    def trusted_by_then_swap(data, name):
        decision = decide(data, name)
        os.replace(hostile, path)  # the attacker wins the race on the file system
        return decision

    monkeypatch.setattr(module, 'trusted_by', trusted_by_then_swap)
    with trusted_checkpoints(str(path)):
        loaded = load_checkpoint_file(str(path))
    assert isinstance(loaded['meta'], collections.defaultdict) and not marker.exists()


def test_convert_tool_trusts_one_file_and_writes_plain_data(tmp_path, repo_root):
    path = old_style_checkpoint(tmp_path / 'old.pth')
    out = tmp_path / 'plain.pth'
    tool = [sys.executable, os.path.join(repo_root, 'tools', 'convert_weights.py')]
    refused = subprocess.run(tool + ['--whole', str(path), str(out)], capture_output=True, text=True)
    assert refused.returncode != 0 and 'UnsafeCheckpointError' in refused.stderr and not out.exists()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    done = subprocess.run(tool + ['--trust-sha256', digest, str(path), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.load(str(out), weights_only=True)['state_dict']['w'].sum() == 2
    # --trust --whole: the whole checkpoint re-saved as plain data, which then loads with no trust at all
    whole = tmp_path / 'whole.pth'
    done = subprocess.run(tool + ['--trust', '--whole', str(path), str(whole)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'PLAIN' in plain_torch_load(whole)
    loaded = load_checkpoint_file(str(whole))
    assert type(loaded['meta']) is dict and loaded['state_dict']['w'].sum() == 2


def test_whole_conversion_of_a_plain_mmengine_checkpoint_is_plain(tmp_path, repo_root):
    plain = subprocess.run([sys.executable, '-c', tiny_runner_script(tmp_path, 1, False)], capture_output=True,
                           text=True, env=dict(os.environ, GHOST_BACKBONES_STARTUP='0'))
    assert plain.returncode == 0, plain.stderr[-2000:]
    whole = tmp_path / 'whole.pth'
    done = subprocess.run([sys.executable, os.path.join(repo_root, 'tools', 'convert_weights.py'), '--whole',
                           str(tmp_path / 'epoch_1.pth'), str(whole)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'PLAIN' in plain_torch_load(whole)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', b'PK\x03\x04truncated zip', b'\x80\x02}q\x00'])
def test_unreadable_checkpoint_is_named(tmp_path, content):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(str(path))
    assert str(path) in str(info.value) and 'not a readable PyTorch checkpoint' in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_truncated_real_checkpoint_is_named(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'state_dict': {'w': torch.randn(1000)}}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        load_checkpoint_file(str(path))


def test_missing_checkpoint():
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_checkpoint_file(os.path.join('no', 'such', 'nowhere.pth'))
