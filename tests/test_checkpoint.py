"""Checkpoints are read as data: each hostile file below is built here, loaded in a separate
process (so that a crash shows as a failed exit code), refused with UnsafeCheckpointError
naming the file and the refused thing, and nothing runs (marker files stay absent)."""
import collections
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
import torch

import ghost_backbones  # noqa: F401  (the compat fixes)
from ghost_backbones.checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint_file,
                                        trusted_checkpoints)

RECONSTRUCT = np._core.multiarray._reconstruct


class Reduce:
    """Pickles as whatever ``__reduce__`` value it is given: how a hostile file is written."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return self.value


def runs(command):
    """A pickled call of ``os.system(command)``."""
    return Reduce((os.system, (command,)))


def forged_array(dtype, raw: bytes, shape=(2,)):
    return Reduce((RECONSTRUCT, (np.ndarray, (0,), b'b'), (1, shape, dtype, False, raw)))


def forged_dtype(code, state):
    return Reduce((np.dtype, (code, False, True), state))


def with_pickle(path, payload: bytes):
    """A torch zip checkpoint whose data.pkl is ``payload`` (for pickles torch.save cannot write)."""
    torch.save({'x': 1}, str(path))
    with zipfile.ZipFile(path) as source:
        entries = {info.filename: source.read(info.filename) for info in source.infolist()}
    with zipfile.ZipFile(path, 'w') as target:
        for name, data in entries.items():
            target.writestr(name, payload if name.endswith('data.pkl') else data)
    return path


def text(value: str) -> bytes:
    return b'X' + len(value.encode()).to_bytes(4, 'little') + value.encode()  # BINUNICODE


def getattr_os_system(command: str) -> bytes:
    """``getattr(__import__('os'), 'system')(command)`` in pickle opcodes (protocol 2)."""
    return (b'\x80\x02c__builtin__\ngetattr\nc__builtin__\n__import__\n' + text('os') + b'\x85R' +
            text('system') + b'\x86R' + text(command) + b'\x85R.')


def getattr_history_buffer(name: str) -> bytes:
    """``getattr(HistoryBuffer, name)``: allowed for the statistics names only."""
    return (b'\x80\x02c__builtin__\ngetattr\ncmmengine.logging.history_buffer\nHistoryBuffer\n' + text(name) +
            b'\x86R.')


LOADER = r'''
import copy, gc, json, sys
import ghost_backbones
from mmengine.logging import HistoryBuffer
from ghost_backbones.checkpoint import UnsafeCheckpointError, load_checkpoint_file
HistoryBuffer()  # registers mmengine's statistics methods in the class-wide table
outcome = {}
for path in sys.argv[1:]:
    try:
        copy.deepcopy(load_checkpoint_file(path))
        outcome[path] = 'loaded'
    except UnsafeCheckpointError as error:
        outcome[path] = 'refused: ' + str(error)
    gc.collect()
outcome['statistics intact'] = all(HistoryBuffer._statistics_methods.get(name) is getattr(HistoryBuffer, name)
                                   for name in ('min', 'max', 'current', 'mean'))
print(json.dumps(outcome))
'''


def load_in_subprocess(paths, env=None):
    result = subprocess.run([sys.executable, '-c', LOADER, *map(str, paths)], capture_output=True, text=True,
                            env=dict(os.environ, **(env or {})))
    assert result.returncode == 0, f'the loading process died ({result.returncode}): {result.stderr[-2000:]}'
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_hostile_files_are_refused_and_nothing_runs_or_crashes(tmp_path):
    marker = tmp_path / 'pwned'
    hostile = {
        'object_array': ({'a': forged_array(np.dtype('O'), b'\x41' * 16)}, "numpy dtype 'O8'"),
        'void_dtype': ({'d': forged_dtype('V8', (3, '|', None, None, None, 8, 1, 0x3F))}, "'V8'"),
        'void_array': ({'a': forged_array(forged_dtype('V8', (3, '|', None, None, None, 8, 1, 0x3F)), b'\0' * 16)},
                       "'V8'"),
        'float_with_flags': ({'d': forged_dtype('f8', (3, '<', None, None, None, -1, -1, 63))}, 'dtype state'),
        'history_buffer_table': ({'buffer': Reduce((__import__('mmengine').logging.HistoryBuffer, (), {
            '_log_history': np.array([1.0]), '_count_history': np.array([1]), 'max_length': 10,
            'statistics_methods': {'mean': collections.Counter}}))}, 'HistoryBuffer statistics'),
        'os_system': ({'meta': runs(f'touch {marker}')}, 'posix.system'),
    }
    paths = {}
    for name, (obj, _) in hostile.items():
        paths[name] = tmp_path / f'{name}.pth'
        torch.save(obj, str(paths[name]))
    paths['getattr_os_system'] = with_pickle(tmp_path / 'getattr_os.pth', getattr_os_system(f'touch {marker}'))
    paths['getattr_other'] = with_pickle(tmp_path / 'getattr_other.pth', getattr_history_buffer('__setstate__'))
    expected = {name: thing for name, (_, thing) in hostile.items()}
    expected.update(getattr_os_system='builtins.__import__', getattr_other="getattr('HistoryBufferState', '__setstate__')")

    outcome = load_in_subprocess(paths.values())
    for name, path in paths.items():
        assert outcome[str(path)].startswith('refused: '), (name, outcome[str(path)])
        assert str(path) in outcome[str(path)] and expected[name] in outcome[str(path)], (name, outcome[str(path)])
    assert outcome['statistics intact']
    assert not marker.exists()


def test_plain_mmengine_statistics_references_load():
    from ghost_backbones.checkpoint import DataUnpickler, StatisticsName
    import io
    assert DataUnpickler(io.BytesIO(getattr_history_buffer('mean'))).load() == StatisticsName('mean')


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
    # what the plugin writes has no code references and loads with torch's own weights_only
    ours = tmp_path / 'epoch_3.pth'
    assert not any('getattr' in name or 'numpy' in name
                   for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(ours)))


def test_numpy_1_names_load(tmp_path):
    """A checkpoint written under numpy < 2 names numpy.core.multiarray: plain data, it loads."""
    path = tmp_path / 'numpy1.pth'
    torch.save({'history': np.arange(4, dtype=np.float32), 'seed': np.int64(7)}, str(path),
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert b'numpy._core.multiarray' in data
    path.write_bytes(data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    loaded = load_checkpoint_file(str(path))
    np.testing.assert_array_equal(loaded['history'], np.arange(4, dtype=np.float32))
    assert loaded['history'].dtype == np.float32 and loaded['seed'] == 7 and type(loaded['seed']) is np.int64


def test_torch_allow_list_is_left_exactly_as_it_was(tmp_path):
    path = tmp_path / 'arrays.pth'
    torch.save({'a': np.ones(3)}, str(path))
    torch.serialization.add_safe_globals([np.ndarray])
    try:
        before = list(torch.serialization.get_safe_globals())
        load_checkpoint_file(str(path))
        assert list(torch.serialization.get_safe_globals()) == before
    finally:
        torch.serialization.clear_safe_globals()


class Served(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def file_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, stopped after the test."""
    root = tmp_path / 'www'
    root.mkdir()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), lambda *a: Served(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


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


def test_the_bytes_checked_are_the_bytes_unpickled(tmp_path, monkeypatch):
    """A trusted file swapped for a hostile one right after the trust decision: the hostile
    content is never unpickled (the file is read once)."""
    from ghost_backbones import checkpoint as module
    path = old_style_checkpoint(tmp_path / 'trusted.pth')
    marker = tmp_path / 'pwned_by_swap'
    hostile = old_style_checkpoint(tmp_path / 'hostile.pth', marker=marker)
    decide = module.is_trusted

    def is_trusted_then_swap(data, identity):
        decision = decide(data, identity)
        os.replace(hostile, path)  # the attacker wins the race on the file system
        return decision

    monkeypatch.setattr(module, 'is_trusted', is_trusted_then_swap)
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
