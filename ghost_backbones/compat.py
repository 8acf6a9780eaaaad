"""Every change this package makes to upstream code, in one place: what it fixes, the upstream
report, and the versions that need it. Each applies only to those versions, and only where the
code concerned is used (nothing of mmdet is imported to fix mmdet).

Two stacks provide the same modules (``mmengine``, ``mmcv``, ``mmdet``, ``mmseg``, ``mmpretrain``):
upstream OpenMMLab (distributions ``mmengine``, ``mmdet``, ...) and its maintained fork OneDL
(``onedl-mmengine``, ``onedl-mmdetection``, ...; :func:`stack_of` tells which one is installed).
:data:`NEEDED_BY` lists, for each fix, the versions of each stack that need it, as read in their code
(OneDL: onedl-mmengine 0.10.12, onedl-mmdetection 3.5.1, the latest releases when this was written);
:func:`needs` answers for the running versions, and :func:`applied` tells what was applied.

1. **Checkpoints as data** (upstream mmengine 0.10.0 to 0.10.7, the latest release; OneDL
   onedl-mmengine 0.10.8 to 0.10.12, whose ``_safe_torch_load`` tries ``torch.load(weights_only=True)``
   with numpy's ``ndarray`` / ``dtype`` / ``_reconstruct`` and ``getattr`` allowed, and on any
   ``UnpicklingError`` falls back to ``weights_only=False``: full unpickling of whatever the file asks
   for, exactly what this package refuses; every scheme loader and ``_safe_torch_load`` itself are
   replaced there). With torch >= 2.6,
   mmengine's checkpoints do not load ("Weights only load failed", mmengine issue 1655, PR 1650
   proposes ``weights_only=False``); with any torch, mmengine's URL loaders unpickle fully. Every
   source mmengine's ``CheckpointLoader`` knows now reads checkpoints as data on torch's own
   weights-only unpickler (:mod:`ghost_backbones.checkpoint_sources`), and what mmengine writes is
   plain data that ``torch.load(weights_only=True)`` reads in any process: ``MessageHub.state_dict``
   gives each ``HistoryBuffer`` as a dictionary of numbers (read back into a HistoryBuffer by
   ``MessageHub.load_state_dict``; plain mmengine skips it with a warning) and numpy scalars and
   arrays of its runtime information (e.g. ``eta``) as Python numbers and lists.
2. **SSDHead.predict** (upstream mmdet 3.0.0 to 3.3.0; OneDL onedl-mmdetection 3.4.0 to 3.5.1,
   whose ``SSDHead.__init__`` still sets no ``loss_cls``): ``AttributeError: 'SSDHead' object has no
   attribute 'loss_cls'`` at val/test of SSD and SSDLite (mmdetection issues 11063, 11305,
   11780). SSD classifies with a softmax over ``num_classes + 1`` and has no loss module:
   ``loss_cls = None``, which ``BaseDenseHead`` reads as "no custom channels". Applied when mmdet
   imports its SSD head.
3. **torchrun on a machine whose device is the CPU** (upstream mmengine 0.10.0 to 0.10.7, OneDL
   onedl-mmengine 0.10.8 to 0.10.12: same code; no upstream report found):
   ``_init_dist_pytorch`` calls ``torch.cuda.set_device`` and the Runner gives DDP CUDA
   ``device_ids``. When mmengine's own device choice is 'cpu' (no CUDA, NPU, MLU, MUSA or MPS),
   the process group starts with gloo and DDP wraps the CPU module with ``device_ids=None``;
   every other device takes mmengine's own path.
4. **``ghost_backbones::`` configs** (upstream mmengine 0.10.0 to 0.10.7, OneDL 0.10.8 to 0.10.12): ``_base_ = '<package>::...'`` is refused
   for packages missing from mmengine's ``MODULE2PACKAGE`` table (mmengine issue 1410, PR 1411
   not merged). ``ghost_backbones`` is added to it (also done at interpreter start by
   ``ghost_backbones_startup``, because mmengine reads ``_base_`` before ``custom_imports``).
5. **Scopes of ``ghost_backbones::`` bases** (upstream mmengine 0.10.0 to 0.10.7, OneDL 0.10.8 to
   0.10.12: same code; no upstream report found): mmengine
   tags every typed dict of a ``<package>::`` base with ``_scope_='<package>'``; our configs are
   mmdet / mmseg / mmpretrain configs, whose types are not found in our scope (``CocoDataset is not in
   the mmengine::dataset registry``). Their dicts get the base's own ``default_scope``
   (:func:`ghost_backbones_startup.scope_bases_by_default_scope`, also installed at interpreter start).
6. **``mmseg::`` bases under OneDL** (OneDL onedl-mmengine 0.10.8 to 0.10.12; not upstream, whose
   distribution names are the table's): mmengine's ``MODULE2PACKAGE`` maps ``mmseg`` to the
   distribution ``mmsegmentation``, which OneDL does not install (``onedl-mmsegmentation``):
   ``_base_ = 'mmseg::...'`` failed with ``ModuleNotFoundError: mmsegmentation is not installed``.
   Where a table entry's distribution is missing and its ``onedl-`` namesake is installed, the entry
   names the module itself, which mmengine's ``is_installed`` / ``get_installed_path`` find by import
   spec (:func:`ghost_backbones_startup.resolve_onedl_distributions`, also installed at interpreter
   start, since mmengine reads ``_base_`` before ``custom_imports``).
7. **Resume runs a checkpoint's config text** (upstream mmengine 0.10.0 to 0.10.7, OneDL 0.10.8 to
   0.10.12: same code; no upstream report found): ``Runner.resume`` and ``FlexibleRunner.resume``
   evaluate ``meta['config']`` with ``Config.fromstring(..., '.py')`` (Python executed from a file
   read as data) only to compare its ``gpu_ids``. mmengine writes ``meta['cfg']``; mmdet 2.x wrote
   ``meta['config']``. The resumed checkpoint's ``meta['config']`` is dropped before that check
   (for ``FlexibleRunner``, in what its strategy's ``resume`` returns).
8. **Inferencers run a checkpoint's config** (upstream mmengine 0.10.0 to 0.10.7, OneDL 0.10.8 to
   0.10.12: same code; no upstream report found): ``BaseInferencer`` (mmdet's ``DetInferencer``,
   mmseg's ``MMSegInferencer``, mmpretrain's) given ``weights=`` and no ``model=`` builds the model
   from the config saved in the checkpoint, evaluating its text with ``Config.fromstring(..., '.py')``.
   Read as data instead, that config still decides what runs: mmengine's registries import and call
   any dotted ``type`` (``'os.system'``), registered classes load the files and URLs it names (a
   ``teacher_config`` ``.py`` executed, an ``answer_list_path`` unpickled from a URL), its
   ``collate_fn`` string is imported and called. So a checkpoint's config is used only when the
   checkpoint is trusted (``GHOST_BACKBONES_TRUSTED_CHECKPOINTS``, :class:`trusted_checkpoints`), and
   taken from the bytes found trusted (not from a second read of the path); otherwise
   ``UnsafeCheckpointError`` asks for ``model=<config.py>``.
"""
import functools

import importlib
import os

from ghost_backbones_startup import register_config_scope, resolve_onedl_distributions, scope_bases_by_default_scope
from ghost_backbones_startup.post_import import when_imported

_applied = False
FIXED_MARK = '_ghost_backbones_fix'

OPENMMLAB, ONEDL = 'openmmlab', 'onedl'
# module: OneDL's distribution of it (upstream's are mmengine, mmcv / mmcv-lite, mmdet, mmsegmentation, mmpretrain)
ONEDL_DISTRIBUTIONS = {'mmengine': 'onedl-mmengine', 'mmcv': 'onedl-mmcv', 'mmdet': 'onedl-mmdetection',
                       'mmseg': 'onedl-mmsegmentation', 'mmpretrain': 'onedl-mmpretrain'}
# fix: {stack: (module, lowest version that needs it, first version that does not)}, as in the docstring
NEEDED_BY = {
    'checkpoints_as_data': {OPENMMLAB: ('mmengine', '0.10.0', '0.11.0'), ONEDL: ('mmengine', '0.10.8', '0.11.0')},
    'safe_torch_load_as_data': {ONEDL: ('mmengine', '0.10.8', '0.11.0')},
    'ssd_head_loss_cls': {OPENMMLAB: ('mmdet', '3.0.0', '3.4.0'), ONEDL: ('mmdet', '3.4.0', '3.6.0')},
    'cpu_distributed': {OPENMMLAB: ('mmengine', '0.10.0', '0.11.0'), ONEDL: ('mmengine', '0.10.8', '0.11.0')},
    'config_scope': {OPENMMLAB: ('mmengine', '0.10.0', '0.11.0'), ONEDL: ('mmengine', '0.10.8', '0.11.0')},
    'base_scopes': {OPENMMLAB: ('mmengine', '0.10.0', '0.11.0'), ONEDL: ('mmengine', '0.10.8', '0.11.0')},
    'onedl_distributions': {ONEDL: ('mmengine', '0.10.8', '0.11.0')},
    'resume_without_config_text': {OPENMMLAB: ('mmengine', '0.10.0', '0.11.0'),
                                   ONEDL: ('mmengine', '0.10.8', '0.11.0')},
    'inferencer_config_when_trusted': {OPENMMLAB: ('mmengine', '0.10.0', '0.11.0'),
                                      ONEDL: ('mmengine', '0.10.8', '0.11.0')},
}
_done = set()  # the fixes applied in this process (see :func:`applied`)


def version_in(version: str, low: str, high: str) -> bool:
    """``low <= version < high`` by numeric components (mmengine's digit_version)."""
    from mmengine.utils import digit_version
    return digit_version(low) <= digit_version(version) < digit_version(high)


def stack_of(module: str) -> str:
    """'onedl' when OneDL's distribution of ``module`` is installed (``onedl-mmengine`` for mmengine, ...),
    else 'openmmlab'."""
    import importlib.metadata as metadata
    try:
        metadata.distribution(ONEDL_DISTRIBUTIONS[module])
    except metadata.PackageNotFoundError:
        return OPENMMLAB
    return ONEDL


def needs(fix: str) -> bool:
    """Whether the running stack and version of the module concerned need ``fix`` (see NEEDED_BY);
    the version is the imported module's ``__version__``."""
    any_rule = next(iter(NEEDED_BY[fix].values()))
    rule = NEEDED_BY[fix].get(stack_of(any_rule[0]))
    if rule is None:
        return False
    module, low, high = rule
    return version_in(importlib.import_module(module).__version__, low, high)


def applied() -> list:
    """The fixes applied in this process so far (the SSDHead fix once mmdet imported its SSD head)."""
    return sorted(_done)


def mmengine_needs_fixes() -> bool:
    return needs('checkpoints_as_data')


def _apply(fix: str, function, *args) -> None:
    if needs(fix):
        function(*args)
        _done.add(fix)


def apply() -> None:
    """Apply the fixes the running versions need (idempotent)."""
    global _applied
    if _applied:
        return
    if needs('checkpoints_as_data'):
        make_message_hub_state_plain()
        read_checkpoints_as_data()
        _done.add('checkpoints_as_data')
    _apply('safe_torch_load_as_data', read_safe_torch_load_as_data)
    _apply('cpu_distributed', allow_cpu_distributed)
    _apply('config_scope', when_imported, 'mmengine.config.utils', register_config_scope)
    _apply('onedl_distributions', when_imported, 'mmengine.config.utils', resolve_onedl_distributions)
    _apply('base_scopes', scope_package_bases)
    _apply('resume_without_config_text', when_imported, 'mmengine.runner.runner', resume_without_config_text)
    _apply('resume_without_config_text', when_imported, 'mmengine.runner._flexible_runner', resume_without_config_text)
    _apply('inferencer_config_when_trusted', when_imported, 'mmengine.infer.infer', inferencer_config_when_trusted)
    when_imported('mmdet.models.dense_heads.ssd_head', fix_ssd_head_loss_cls)
    _applied = True


HISTORY_BUFFER_TYPE = 'mmengine.logging.HistoryBuffer'


def history_buffer_as_plain(buffer) -> dict:
    """Fix 1: a HistoryBuffer as numbers, the form MessageHub's state holds."""
    return dict(type=HISTORY_BUFFER_TYPE, log_history=buffer._log_history.tolist(),
                count_history=buffer._count_history.tolist(), max_length=buffer.max_length)


def history_buffer_from_plain(value, key: str = '?'):
    """Fix 1: a HistoryBuffer back from :func:`history_buffer_as_plain`'s form (other values as they are),
    from numbers only, as the checkpoint loader rebuilds one (a file wrote the form)."""
    from .checkpoint_errors import CheckpointError, Refused
    from .checkpoint_rebuild import checked_history_buffer
    if isinstance(value, dict) and value.get('type') == HISTORY_BUFFER_TYPE:
        try:
            return checked_history_buffer(value.get('log_history'), value.get('count_history'),
                                          value.get('max_length'))
        except Refused as refused:
            raise CheckpointError(f'the logged value {key!r} of the MessageHub state: {refused}') from None
    return value


def plain(value):
    """numpy scalars and arrays as Python numbers and lists; anything else unchanged."""
    import numpy as np
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def make_message_hub_state_plain() -> None:
    """Fix 1: the MessageHub state in checkpoints is plain data (HistoryBuffers as numbers, runtime
    information without numpy objects), and reads back into HistoryBuffers."""
    from mmengine.logging import HistoryBuffer, MessageHub
    original_state_dict, original_load = MessageHub.state_dict, MessageHub.load_state_dict
    if getattr(original_state_dict, FIXED_MARK, False):
        return

    @functools.wraps(original_state_dict)
    def state_dict(self) -> dict:
        state = original_state_dict(self)
        state['log_scalars'] = type(state['log_scalars'])(
            (key, history_buffer_as_plain(value) if isinstance(value, HistoryBuffer) else value)
            for key, value in state['log_scalars'].items())
        state['runtime_info'] = type(state['runtime_info'])(
            (key, plain(value)) for key, value in state['runtime_info'].items())
        return state

    @functools.wraps(original_load)
    def load_state_dict(self, state_dict) -> None:
        if isinstance(state_dict, dict) and isinstance(state_dict.get('log_scalars'), dict):
            state_dict = dict(state_dict, log_scalars=type(state_dict['log_scalars'])(
                (key, history_buffer_from_plain(value, key)) for key, value in state_dict['log_scalars'].items()))
        original_load(self, state_dict)

    setattr(state_dict, FIXED_MARK, True)
    MessageHub.state_dict, MessageHub.load_state_dict = state_dict, load_state_dict


def read_checkpoints_as_data() -> None:
    """Fix 1: every checkpoint source of mmengine reads as data."""
    from .checkpoint_sources import register
    register()


def read_safe_torch_load_as_data() -> None:
    """Fix 1 (OneDL onedl-mmengine 0.10.8 to 0.10.12): ``mmengine.runner.checkpoint._safe_torch_load``
    (weights_only=True, then a fallback to weights_only=False) reads as data instead, for code that calls
    it directly; the scheme loaders no longer reach it (:func:`read_checkpoints_as_data`). The fallback
    is never taken: what the data-only reader refuses raises ``UnsafeCheckpointError``."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    original = getattr(mmengine_checkpoint, '_safe_torch_load', None)
    if original is None or getattr(original, FIXED_MARK, False):
        return
    from .checkpoint import load_checkpoint_bytes, load_checkpoint_file

    @functools.wraps(original)
    def _safe_torch_load(file, map_location=None, weights_only=None):
        if isinstance(file, (str, os.PathLike)):
            return load_checkpoint_file(os.fspath(file), map_location)
        data = file.read() if hasattr(file, 'read') else bytes(file)
        return load_checkpoint_bytes(data, str(getattr(file, 'name', '<checkpoint buffer>')), map_location)

    setattr(_safe_torch_load, FIXED_MARK, True)
    mmengine_checkpoint._safe_torch_load = _safe_torch_load


def fix_ssd_head_loss_cls(ssd_head_module) -> None:
    """Fix 2: give SSDHead (and subclasses that lack one) a ``loss_cls`` of None (upstream mmdet 3.0.0 to
    3.3.0, OneDL onedl-mmdetection 3.4.0 to 3.5.1)."""
    if not needs('ssd_head_loss_cls'):
        return
    _done.add('ssd_head_loss_cls')
    ssd_head = ssd_head_module.SSDHead
    if getattr(ssd_head.__init__, FIXED_MARK, False):
        return
    original_init = ssd_head.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if not hasattr(self, 'loss_cls'):
            self.loss_cls = None

    setattr(__init__, FIXED_MARK, True)
    ssd_head.__init__ = __init__


def runs_on_cpu() -> bool:
    """mmengine's own device choice (cuda, npu, mlu, musa, mps or cpu) is the CPU."""
    from mmengine.device import get_device
    return get_device() == 'cpu'


def allow_cpu_distributed() -> None:
    """Fix 3: torchrun where mmengine's device is the CPU runs gloo + CPU DDP."""
    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import distributed as wrappers

    original_init_dist = dist_utils._init_dist_pytorch
    if not getattr(original_init_dist, FIXED_MARK, False):
        @functools.wraps(original_init_dist)
        def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
            if not runs_on_cpu() or init_backend != 'torch':
                return original_init_dist(backend, init_backend=init_backend, **kwargs)
            torch_dist.init_process_group(backend='gloo' if backend == 'nccl' else backend, **kwargs)

        setattr(_init_dist_pytorch, FIXED_MARK, True)
        dist_utils._init_dist_pytorch = _init_dist_pytorch

    ddp_init = wrappers.MMDistributedDataParallel.__init__
    if getattr(ddp_init, FIXED_MARK, False):
        return

    @functools.wraps(ddp_init)
    def __init__(self, module, *args, **kwargs):
        if runs_on_cpu() and all(p.device.type == 'cpu' for p in module.parameters()):
            kwargs['device_ids'] = None
        ddp_init(self, module, *args, **kwargs)

    setattr(__init__, FIXED_MARK, True)
    wrappers.MMDistributedDataParallel.__init__ = __init__


def resume_without_config_text(runner_module) -> None:
    """Fix 7: the checkpoint a Runner resumes from loses ``meta['config']`` before ``resume`` reads it.
    ``Runner.resume`` loads through ``self.load_checkpoint``, ``FlexibleRunner.resume`` through
    ``self.strategy.resume`` (each strategy its own): that loader is wrapped for the call."""
    flexible = hasattr(runner_module, 'FlexibleRunner')
    runner_class = runner_module.FlexibleRunner if flexible else runner_module.Runner
    resume = runner_class.resume
    if getattr(resume, FIXED_MARK, False):
        return

    @functools.wraps(resume)
    def resume_fixed(self, *args, **kwargs):
        owner, name = (self.strategy, 'resume') if flexible else (self, 'load_checkpoint')
        own_attribute = name in vars(owner)
        load = getattr(owner, name)

        def load_without_config_text(*load_args, **load_kwargs):
            checkpoint = load(*load_args, **load_kwargs)
            meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
            if isinstance(meta, dict):
                meta.pop('config', None)
            return checkpoint

        setattr(owner, name, load_without_config_text)
        try:
            return resume(self, *args, **kwargs)
        finally:
            if own_attribute:
                setattr(owner, name, load)
            else:
                delattr(owner, name)

    setattr(resume_fixed, FIXED_MARK, True)
    runner_class.resume = resume_fixed


def inferencer_config_when_trusted(infer_module) -> None:
    """Fix 8: ``BaseInferencer._init_model`` given no config takes the config saved in the checkpoint only
    from a trusted checkpoint (:func:`trusted_checkpoint`), evaluated from the very bytes found trusted;
    mmengine's own ``_init_model`` then builds the model and loads the weights (read again, as data)."""
    base = infer_module.BaseInferencer
    init_model = base._init_model
    if getattr(init_model, FIXED_MARK, False):
        return

    @functools.wraps(init_model)
    def init_model_fixed(self, cfg, weights, device='cpu'):
        if not cfg and weights is not None:
            text = saved_config_text(trusted_checkpoint(weights), weights)
            cfg.update(infer_module.Config.fromstring(text, file_format='.py')._cfg_dict)
            if not cfg:  # (mmengine would read the path again for a config)
                from .checkpoint_errors import CheckpointError
                raise CheckpointError(f'the config saved in {weights} is empty: give the inferencer model=<config.py>')
        return init_model(self, cfg, weights, device)

    setattr(init_model_fixed, FIXED_MARK, True)
    base._init_model = init_model_fixed


def trusted_checkpoint(weights: str):
    """The checkpoint at ``weights`` if it is a local file whose content the user trusts, read once;
    else UnsafeCheckpointError saying what to do."""
    from .checkpoint import load_checkpoint_bytes
    from .checkpoint_errors import UnsafeCheckpointError
    from .checkpoint_trust import TRUSTED_ENV, read_regular_file, trusted_by
    path = os.path.expanduser(weights)
    data = read_regular_file(path) if '://' not in weights and os.path.isfile(path) else None
    if data is not None and trusted_by(data, path)[0] is not None:
        return load_checkpoint_bytes(data, path, map_location='cpu')
    raise UnsafeCheckpointError(
        f'{weights}: given weights alone, the inferencer builds the model from the config saved in the checkpoint, '
        'and that config decides what runs (mmengine evaluates its text as Python; read as data, the types, files '
        'and URLs it names still act). Give the config as well: model=<config.py>. Or, for a local checkpoint you '
        f'trust, {TRUSTED_ENV}=sha256:<sha256sum of the file>')


def saved_config_text(checkpoint, source: str) -> str:
    """The config text mmengine's inferencer reads from a checkpoint: the MessageHub's, else ``meta['cfg']``."""
    from .checkpoint_errors import CheckpointError
    hub = checkpoint.get('message_hub') if isinstance(checkpoint, dict) else None
    runtime_info = hub.get('runtime_info') if isinstance(hub, dict) else getattr(hub, 'runtime_info', None)
    if isinstance(runtime_info, dict) and 'cfg' in runtime_info:
        return runtime_info['cfg']
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and 'cfg' in meta:
        return meta['cfg']
    raise CheckpointError(f'{source} holds no config (message_hub.runtime_info.cfg or meta.cfg): give the inferencer '
                          'its config file as well: model=<config.py>')


def scope_package_bases() -> None:
    """Fix 5: the typed dicts of a ``ghost_backbones::`` base get the base's ``default_scope``."""
    when_imported('mmengine.config.config', scope_bases_by_default_scope)
