"""Every fix this package applies to upstream code, in one place, each naming its report.

Applied once by ``import ghost_backbones`` (``apply()`` is idempotent):

1. mmengine 0.10.7 + torch >= 2.6: ``torch.load`` defaults to ``weights_only=True`` and
   mmengine's checkpoints do not load (mmengine issue 1655, PR 1650: "Weights only load
   failed"). Instead of turning full unpickling back on:
   * what mmengine writes is made data-only: ``HistoryBuffer.__getstate__`` pickled its
     statistics methods (references like ``getattr(HistoryBuffer, 'min')``, i.e. code);
     they are class-level and re-created on load, so they are no longer written;
   * mmengine's local-file checkpoint loader is replaced by
     :func:`ghost_backbones.weights.load_checkpoint_file`: data-only unpickling with an
     allow-list of the types a Runner checkpoint holds, a clear refusal of anything else,
     and an explicit opt-in for a trusted old file.
2. mmdet 3.3.0 ``SSDHead`` has no ``loss_cls``, so ``predict`` (val/test of SSD and SSDLite)
   fails with ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``
   (mmdetection issues 11063, 11305, 11780). SSD classifies with a softmax over
   ``num_classes + 1`` and has no loss module: ``loss_cls`` is set to ``None``, which
   ``BaseDenseHead._predict_by_feat_single`` reads as "no custom channels".
3. mmengine 0.10.7 distributed runs assume CUDA: ``_init_dist_pytorch`` calls
   ``torch.cuda.set_device`` and the Runner gives ``MMDistributedDataParallel`` CUDA
   ``device_ids``, which DDP rejects for a CPU module. Without CUDA, the process group starts
   with gloo (without ``set_device``) and CPU modules get ``device_ids=None``: plain DDP on CPU.
"""
import functools
import importlib.util

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    make_history_buffer_data_only()
    use_safe_checkpoint_loader()
    allow_cpu_distributed()
    if importlib.util.find_spec('mmdet') is not None:
        fix_ssd_head_loss_cls()
    _applied = True


def make_history_buffer_data_only() -> None:
    """Fix 1a: HistoryBuffer pickles as plain data (arrays and an int)."""
    from mmengine.logging import HistoryBuffer

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}

    HistoryBuffer.__getstate__ = __getstate__


def use_safe_checkpoint_loader() -> None:
    """Fix 1b: mmengine's loader for local paths (scheme '') reads data-only pickles."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from .weights import load_checkpoint_file
    CheckpointLoader.register_scheme(prefixes='', loader=load_checkpoint_file, force=True)


def fix_ssd_head_loss_cls() -> None:
    """Fix 2: give SSDHead (and subclasses that lack one) a ``loss_cls`` of None."""
    from mmdet.models.dense_heads import SSDHead
    if getattr(SSDHead.__init__, '_ghost_backbones_fix', False):
        return
    original_init = SSDHead.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if not hasattr(self, 'loss_cls'):
            self.loss_cls = None

    __init__._ghost_backbones_fix = True
    SSDHead.__init__ = __init__


def allow_cpu_distributed() -> None:
    """Fix 3: torchrun on a machine without CUDA runs gloo + CPU DDP."""
    import torch
    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import distributed as wrappers

    original_init_dist = dist_utils._init_dist_pytorch

    def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if torch.cuda.is_available() or init_backend != 'torch':
            return original_init_dist(backend, init_backend=init_backend, **kwargs)
        torch_dist.init_process_group(backend='gloo' if backend == 'nccl' else backend, **kwargs)

    if not getattr(original_init_dist, '_ghost_backbones_fix', False):
        _init_dist_pytorch._ghost_backbones_fix = True
        dist_utils._init_dist_pytorch = _init_dist_pytorch

    ddp_init = wrappers.MMDistributedDataParallel.__init__
    if getattr(ddp_init, '_ghost_backbones_fix', False):
        return

    @functools.wraps(ddp_init)
    def __init__(self, module, *args, **kwargs):
        if all(p.device.type == 'cpu' for p in module.parameters()):
            kwargs['device_ids'] = None
        ddp_init(self, module, *args, **kwargs)

    __init__._ghost_backbones_fix = True
    wrappers.MMDistributedDataParallel.__init__ = __init__
