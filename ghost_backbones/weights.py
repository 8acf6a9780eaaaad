"""Reading checkpoints safely, and loading timm / official GhostNet weights into the backbone.

Safe loading: checkpoints are read with ``torch.load(weights_only=True)`` and an allow-list of
the plain data types that an mmengine Runner checkpoint holds (numpy arrays, dtypes and scalars,
``collections`` containers, mmengine's ``HistoryBuffer``). A pickle that names anything else,
i.e. could run code when loaded, is refused with :class:`UnsafeCheckpointError`. A file the
user trusts is opted in explicitly: its path in the environment variable
``GHOST_BACKBONES_TRUSTED_CHECKPOINTS`` (``os.pathsep``-separated) or :func:`trust_checkpoint`.
"""
import collections
import logging
import os
import os.path as osp
import pickle
import re
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.logging import print_log

TRUSTED_ENV = 'GHOST_BACKBONES_TRUSTED_CHECKPOINTS'
_trusted_paths = set()

# Keys of the ImageNet classifier, which a backbone has no use for.
HEAD_KEY_PATTERN = re.compile(r'^(conv_head|classifier|fc|head|act2|global_pool)\.')


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle references code outside the allow-list."""


class CheckpointKeyError(CheckpointError, KeyError):
    """A state dict whose keys do not match the model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def safe_globals() -> List[object]:
    """The types an mmengine checkpoint may hold besides tensors and builtin containers."""
    from mmengine.logging import HistoryBuffer
    core = getattr(np, '_core', None) or np.core
    allowed = [
        core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype,
        collections.Counter, collections.OrderedDict, collections.defaultdict, HistoryBuffer,
    ]
    dtypes_module = getattr(np, 'dtypes', None)
    if dtypes_module is not None:
        allowed += [getattr(dtypes_module, name) for name in dir(dtypes_module) if name.endswith('DType')]
    allowed += [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                           np.float16, np.float32, np.float64)]
    return list({id(obj): obj for obj in allowed}.values())


def trust_checkpoint(path: str) -> None:
    """Opt one file into unrestricted (code-running) unpickling. Only for files you trust."""
    _trusted_paths.add(osp.realpath(osp.expanduser(path)))


def is_trusted(path: str) -> bool:
    env_paths = [p for p in os.environ.get(TRUSTED_ENV, '').split(os.pathsep) if p]
    trusted = _trusted_paths | {osp.realpath(osp.expanduser(p)) for p in env_paths}
    return osp.realpath(path) in trusted


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load`` for checkpoints: data-only unpickling, clear errors naming the file."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        # torch names a refused global ("Unsupported global: GLOBAL x", "unsupported GLOBAL
        # posix.system"); anything else (e.g. "Unsupported operand") means the bytes are no pickle.
        refused_code = 'global' in message.lower()
        if not refused_code:
            raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint '
                                  f'(truncated or another kind of file): {first_line(message)}') from None
        if is_trusted(filename):
            print_log(f'loading trusted checkpoint {filename} with full unpickling', logger='current',
                      level=logging.WARNING)
            return torch.load(filename, map_location=map_location, weights_only=False)
        raise UnsafeCheckpointError(
            f'refused to load {filename}: its pickle references objects outside the allow-list of '
            f'data types ({first_line(message)}). Loading it could run arbitrary code. If you trust '
            f'this file (e.g. an old mmengine checkpoint), opt it in with {TRUSTED_ENV}={filename} '
            f'or re-save it once as plain data: '
            f'python tools/convert_weights.py --trust --whole {filename} OUT.pth') from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint '
                              f'(truncated or another kind of file): {first_line(str(error))}') from None


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if 'global' in line.lower() or 'invalid' in line.lower()]
    return (useful or lines or [''])[0][:300]


def unwrap_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint nested as ``state_dict`` / ``model`` / ``state_dict_ema``."""
    for key in ('state_dict', 'model', 'state_dict_ema', 'model_ema'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return unwrap_state_dict(checkpoint[key])
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'expected a state dict, got {type(checkpoint).__name__}')
    return checkpoint


def convert_official_keys(state_dict: Dict[str, torch.Tensor], prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Map timm / official GhostNet keys to this backbone's.

    Handles a ``prefix`` (e.g. ``backbone.`` of a detector checkpoint), the ``module.`` of DDP
    wrappers, the official v3 release's ``bn.`` names (timm's ``bn1.``) and its FLOP counters
    (``total_ops`` / ``total_params``).
    """
    converted = {}
    for key, value in state_dict.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        if key.startswith('module.'):
            key = key[len('module.'):]
        if 'total_ops' in key or 'total_params' in key:
            continue
        if 'bn.' in key and ('.ghost' in key or '.dw_rpr_' in key):
            key = key.replace('bn.', 'bn1.')
        converted[key] = value
    return converted


def load_pretrained(model: torch.nn.Module, checkpoint: str, prefix: Optional[str] = None,
                    map_location='cpu') -> Dict[str, List[str]]:
    """Load ImageNet (or detector) weights into ``model`` strictly, but for classifier keys.

    Returns the skipped head keys. Raises :class:`CheckpointKeyError` naming missing,
    unexpected and wrongly shaped keys.
    """
    state_dict = convert_official_keys(unwrap_state_dict(load_checkpoint_file(checkpoint, map_location)), prefix)
    if prefix and not state_dict:
        raise CheckpointKeyError(f'no key of {checkpoint} starts with prefix {prefix!r}')
    skipped = sorted(k for k in state_dict if HEAD_KEY_PATTERN.match(k))
    state_dict = {k: v for k, v in state_dict.items() if k not in skipped}
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
                    for k in set(own) & set(state_dict) if state_dict[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointKeyError(
            f'checkpoint {checkpoint} does not match {type(model).__name__} '
            f'(arch={getattr(model, "arch", "?")!r}, widen_factor={getattr(model, "widen_factor", "?")}):'
            + describe_keys('missing in checkpoint', missing)
            + describe_keys('unexpected in checkpoint', unexpected)
            + describe_keys('shape mismatch', shapes))
    model.load_state_dict(state_dict, strict=True)
    if skipped:
        print_log(f'loaded {checkpoint}; skipped {len(skipped)} classifier keys: {", ".join(skipped)}',
                  logger='current')
    return {'skipped': skipped}


def describe_keys(title: str, keys: List[str], limit: int = 10) -> str:
    if not keys:
        return ''
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return f'\n  {title} ({len(keys)}): ' + ', '.join(keys[:limit]) + more


def convert_checkpoint(src: str, dst: str, trust: bool = False, whole: bool = False,
                       prefix: Optional[str] = None, keep_head: bool = False) -> Dict[str, int]:
    """Rewrite a checkpoint as a data-only file that loads with ``weights_only=True``.

    Default: the GhostNet weights of a timm / official / mmengine checkpoint (any
    ``state_dict`` / ``model`` nesting, official v3 names, ``prefix`` stripped) as
    ``{'state_dict': ...}``, ready for ``init_cfg=dict(type='Pretrained', checkpoint=dst)``.
    ``whole=True``: the entire checkpoint (e.g. an old mmengine Runner checkpoint, to resume
    from) re-saved; with this package imported its HistoryBuffers pickle as plain data.
    ``trust=True`` opts ``src`` into full unpickling: only for files you trust.
    """
    if trust:
        trust_checkpoint(src)
    checkpoint = load_checkpoint_file(src, map_location='cpu')
    if whole:
        torch.save(checkpoint, dst)
        return {'keys': len(checkpoint) if isinstance(checkpoint, dict) else 1}
    state_dict = convert_official_keys(unwrap_state_dict(checkpoint), prefix)
    dropped = [k for k in state_dict if HEAD_KEY_PATTERN.match(k)] if not keep_head else []
    state_dict = {k: v for k, v in state_dict.items() if k not in dropped and torch.is_tensor(v)}
    if not state_dict:
        raise CheckpointKeyError(f'{src} holds no tensors' + (f' under prefix {prefix!r}' if prefix else ''))
    torch.save({'state_dict': state_dict}, dst)
    return {'tensors': len(state_dict), 'dropped_head_keys': len(dropped)}
