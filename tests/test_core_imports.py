"""The core that other OpenMMLab projects import needs torch and mmengine only, and never
imports the application layer (ghost_backbones.apps)."""
import subprocess
import sys

HIDDEN = ('mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'matplotlib', 'onnx', 'onnxruntime', 'pycocotools', 'timm')

CODE = f'''
import sys
HIDDEN = {HIDDEN!r}
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in HIDDEN:
            raise ModuleNotFoundError('hidden ' + name)
sys.meta_path.insert(0, Hide())
import importlib.util
real = importlib.util.find_spec
importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in HIDDEN else real(n, *a)

import torch
import ghost_backbones
from ghost_backbones import GhostNet
from ghost_backbones.checkpoint import load_checkpoint_file
from ghost_backbones.weights import convert_official_keys
model = GhostNet(arch='v2', widen_factor=0.5, norm_cfg=dict(type='GN', num_groups=2),
                 act_cfg=dict(type='HSwish')).eval()
outs = model(torch.randn(1, 3, 64, 64))
loaded = [name for name in sys.modules if name.split('.')[0] in HIDDEN or name.startswith('ghost_backbones.apps')]
print([tuple(o.shape) for o in outs], loaded, type(model.bn1).__name__, type(model.act1).__name__)
'''


def test_core_imports_and_runs_with_torch_and_mmengine_only():
    result = subprocess.run([sys.executable, '-c', CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == ('[(1, 12, 16, 16), (1, 20, 8, 8), (1, 56, 4, 4), (1, 480, 2, 2)] [] '
                                     'GroupNorm Hardswish')
