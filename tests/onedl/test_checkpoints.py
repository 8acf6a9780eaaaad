"""Hostile checkpoints on OneDL: onedl-mmengine's own loading (``_safe_torch_load``: weights_only=True, then
weights_only=False on any UnpicklingError) runs a pickled command; with the plugin imported every path refuses
the file and the fallback is never reached. (tests/test_checkpoint_attacks.py runs on OneDL too: Makefile
ONEDL_TESTS.)"""
import json
import os
import subprocess
import sys

import numpy as np
import torch

from hostile_checkpoints import forged_array, getattr_os_system, runs, with_pickle

# Records every torch.load call (its weights_only) before anything of mmengine is imported, then loads each file
# through each of OneDL's entry points.
LOADS = r'''
import io, json, sys
import torch
calls = []
real_load = torch.load
def recording_load(*args, **kwargs):
    calls.append(kwargs.get('weights_only', 'default'))
    return real_load(*args, **kwargs)
torch.load = recording_load
if sys.argv[1] == 'plugin':
    import ghost_backbones
import torch.nn as nn
from mmengine.runner import checkpoint as ckpt
from mmengine.runner.checkpoint import CheckpointLoader, load_checkpoint
entry_points = {
    'CheckpointLoader': lambda path: CheckpointLoader.load_checkpoint(path, map_location='cpu'),
    'load_checkpoint': lambda path: load_checkpoint(nn.Linear(2, 1), path, map_location='cpu'),
    '_safe_torch_load(path)': lambda path: ckpt._safe_torch_load(path, map_location='cpu'),
    '_safe_torch_load(buffer)': lambda path: ckpt._safe_torch_load(io.BytesIO(open(path, 'rb').read())),
}
outcome = {}
for path in sys.argv[2:]:
    for name, load in entry_points.items():
        try:
            load(path)
            outcome[f'{name} {path}'] = 'loaded'
        except Exception as error:
            outcome[f'{name} {path}'] = f'{type(error).__name__}: {str(error)[:300]}'
print(json.dumps(dict(outcome=outcome, weights_only=[str(c) for c in calls])))
'''


def hostile(tmp_path):
    marker = tmp_path / 'pwned'
    files = [tmp_path / 'os_system.pth', tmp_path / 'object_array.pth']
    torch.save({'state_dict': {}, 'meta': runs(f'touch {marker}')}, str(files[0]))
    torch.save({'state_dict': {}, 'a': forged_array(np.dtype('O'), b'\x41' * 16)}, str(files[1]))
    files.append(with_pickle(tmp_path / 'getattr_os_system.pth', getattr_os_system(f'touch {marker}')))
    return marker, [str(f) for f in files]


def load(mode, paths, tmp_path):
    result = subprocess.run([sys.executable, '-c', LOADS, mode, *paths], capture_output=True, text=True,
                            cwd=str(tmp_path), timeout=300,
                            env=dict(os.environ, GHOST_BACKBONES_STARTUP='1' if mode == 'plugin' else '0'))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout + result.stderr


def test_without_the_plugin_onedl_falls_back_and_runs_the_pickle(tmp_path):
    """The attack is real on OneDL's own loader: the fallback to weights_only=False runs ``touch``."""
    marker, paths = hostile(tmp_path)
    report, output = load('plain', paths[:1], tmp_path)
    assert 'Falling back to weights_only=False' in output
    assert 'False' in report['weights_only'] and marker.exists()


def test_with_the_plugin_every_onedl_entry_point_refuses_and_never_falls_back(tmp_path):
    marker, paths = hostile(tmp_path)
    report, output = load('plugin', paths, tmp_path)
    assert len(report['outcome']) == 4 * len(paths)
    for key, message in report['outcome'].items():
        assert message.startswith(('UnsafeCheckpointError', 'CheckpointError')), (key, message)
    assert not marker.exists()
    assert 'False' not in report['weights_only'], report['weights_only']  # torch.load(weights_only=False): never
    assert 'Falling back' not in output


def test_a_checkpoint_onedl_writes_loads_through_every_entry_point(tmp_path):
    """What OneDL's Runner writes (numpy scalars, HistoryBuffers) loads as data through the same paths."""
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'weight': torch.ones(1, 2), 'bias': torch.zeros(1)},
                'message_hub': {'log_scalars': {'loss': HistoryBuffer([1.0, 2.0], [1, 1])},
                                'runtime_info': {'eta': np.float64(3.5), 'iter': np.int64(4)}}}, str(path))
    report, _ = load('plugin', [str(path)], tmp_path)
    assert set(report['outcome'].values()) == {'loaded'}, report
    assert 'False' not in report['weights_only']
