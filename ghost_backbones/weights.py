"""Loading timm / official GhostNet weights into the backbone, and converting checkpoints.

Every file is read as data (:mod:`ghost_backbones.checkpoint`), from a path, a safetensors file, a
Hugging Face hub name (``timm/ghostnet_100.in1k``, ``hf-hub:timm/...``: :mod:`ghost_backbones.hub_weights`)
or any URL scheme mmengine knows (``https://``, ``open-mmlab://``, ...). The state-dict layout is timm's
and the official releases': classifier keys are skipped, ``num_batches_tracked`` buffers may be missing or
extra (as mmengine's ``load_state_dict`` allows), weights of another arch or width are refused naming both,
and any other mismatch is an error naming the keys.
"""
import os.path as osp
import re
from typing import Dict, List, NamedTuple, Optional

import torch
from mmengine.logging import print_log

from .checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint_file,  # noqa: F401
                         plain_data, trusted_checkpoints)
from .hub_weights import hub_name, resolve_hub_weights
from .models.ghostnet import LAST_CHANNELS
from .models.layers import make_divisible

# Keys of the ImageNet classifier, which a backbone has no use for.
HEAD_KEY_PATTERN = re.compile(r'^(conv_head|classifier|fc|head|act2|global_pool)\.')


class CheckpointKeyError(CheckpointError, KeyError):
    """A state dict whose keys do not match the model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class WeightsMismatchError(CheckpointKeyError):
    """Weights of another GhostNet (arch or width) than the model's."""


def read_any_checkpoint(checkpoint: str, map_location='cpu'):
    """A checkpoint from a path or a URL scheme, through mmengine's (data-only) loaders."""
    from mmengine.runner.checkpoint import CheckpointLoader
    return CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location, logger='current')


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


# timm's / the official classifier head -> mmpretrain's StackedLinearClsHead(mid_channels=[1280])
MMPRETRAIN_HEAD_KEYS = {'conv_head.weight': 'head.layers.0.fc.weight', 'conv_head.bias': 'head.layers.0.fc.bias',
                        'classifier.weight': 'head.layers.1.fc.weight', 'classifier.bias': 'head.layers.1.fc.bias'}


def to_mmpretrain(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A whole timm / official GhostNet state dict as an mmpretrain ImageClassifier's: the backbone
    under ``backbone.``, ``conv_head`` (a 1x1 conv) as the first linear layer of the head."""
    missing = sorted(set(MMPRETRAIN_HEAD_KEYS) - set(state_dict))
    if missing:
        raise CheckpointKeyError(f'the classifier head is not complete: missing {missing}')
    converted = {}
    for key, value in state_dict.items():
        if key in MMPRETRAIN_HEAD_KEYS:
            converted[MMPRETRAIN_HEAD_KEYS[key]] = value.flatten(1) if key == 'conv_head.weight' else value
        elif not HEAD_KEY_PATTERN.match(key):
            converted[f'backbone.{key}'] = value
    return converted


def load_pretrained(model: torch.nn.Module, checkpoint: str, prefix: Optional[str] = None,
                    map_location='cpu') -> Dict[str, List[str]]:
    """Load ImageNet (or detector) weights into ``model`` strictly, but for classifier keys and
    ``num_batches_tracked`` counters. ``checkpoint``: a path (``.pth`` or ``.safetensors``), a hub name
    (``timm/ghostnet_100.in1k``) or a URL.

    Returns the skipped head keys. Raises :class:`WeightsMismatchError` naming the arch and width the
    file holds and the model's, else :class:`CheckpointKeyError` naming missing, unexpected and
    wrongly shaped keys.
    """
    state_dict = convert_official_keys(unwrap_state_dict(read_any_checkpoint(checkpoint, map_location)), prefix)
    if prefix and not state_dict:
        raise CheckpointKeyError(f'no key of {checkpoint} starts with prefix {prefix!r}')
    skipped = sorted(k for k in state_dict if HEAD_KEY_PATTERN.match(k))
    state_dict = {k: v for k, v in state_dict.items() if k not in skipped}
    own = model.state_dict()
    state_dict = reconcile_batch_counters(state_dict, own)
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
                    for k in set(own) & set(state_dict) if state_dict[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        other = other_weights(checkpoint, state_dict, model)
        raise (WeightsMismatchError if other else CheckpointKeyError)(
            other + f'checkpoint {checkpoint} does not match {type(model).__name__} '
            f'(arch={getattr(model, "arch", "?")!r}, widen_factor={getattr(model, "widen_factor", "?")}):'
            + describe_keys('missing in checkpoint', missing)
            + describe_keys('unexpected in checkpoint', unexpected)
            + describe_keys('shape mismatch', shapes))
    model.load_state_dict(state_dict, strict=True)
    if skipped:
        print_log(f'loaded {checkpoint}; skipped {len(skipped)} classifier keys: {", ".join(skipped)}',
                  logger='current')
    return {'skipped': skipped}


TRACKED = 'num_batches_tracked'


def reconcile_batch_counters(state_dict: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor]):
    """``num_batches_tracked`` missing from the checkpoint keeps the model's value, one the model has no use for
    is dropped (as mmengine's ``load_state_dict`` ignores them): many exporters do not write these counters, and
    they only matter to BN layers with ``momentum=None``."""
    kept = {k: v for k, v in state_dict.items() if not (k.endswith(TRACKED) and k not in own)}
    kept.update({k: v for k, v in own.items() if k.endswith(TRACKED) and k not in kept})
    return kept


class HeldWeights(NamedTuple):
    """What a GhostNet state dict holds, recognised from its keys and shapes."""
    arch: str
    width: float
    last_channels: int
    evidence: str


def identify_weights(state_dict: Dict[str, torch.Tensor]) -> Optional[HeldWeights]:
    """The arch (v3: re-parameterisable ``*_rpr_*`` branches; v2: DFC attention ``short_conv``; else v1) and width
    (``blocks.9.0.conv`` has 960·w output channels) of a timm / official / our state dict; None when the keys are
    not a (training-time) GhostNet's."""
    last = state_dict.get('blocks.9.0.conv.weight')
    if 'conv_stem.weight' not in state_dict or 'conv_stem.bias' in state_dict or not torch.is_tensor(last):
        return None  # not GhostNet, or a deployed (BN-folded) one, whose v2 and v3 look alike
    keys = [k for k in state_dict if not k.endswith(TRACKED)]  # (counters may be the model's own, see above)
    if any('_rpr_' in k for k in keys):
        arch, why = 'v3', 're-parameterisable *_rpr_* branches'
    elif any('.short_conv.' in k for k in keys):
        arch, why = 'v2', 'DFC attention (short_conv) and no *_rpr_* branches'
    else:
        arch, why = 'v1', 'no DFC attention (short_conv), no *_rpr_* branches'
    channels = int(last.shape[0])
    return HeldWeights(arch, round(channels / LAST_CHANNELS, 2), channels,
                       f'recognised from its keys and shapes: {why}; blocks.9.0.conv.weight has {channels} output '
                       f'channels = {LAST_CHANNELS}·{channels / LAST_CHANNELS:g}')


def other_weights(checkpoint: str, state_dict: Dict[str, torch.Tensor], model: torch.nn.Module) -> str:
    """The first line of a mismatch error when the file holds another GhostNet (arch or width) than the model
    (v2 weights into a v1 model, 1.3x into 1.0x); '' when it does not, or when that cannot be told."""
    held = identify_weights(state_dict)
    arch, width = getattr(model, 'arch', None), getattr(model, 'widen_factor', None)
    if held is None or arch is None or width is None:
        return ''
    if held.arch == arch and held.last_channels == make_divisible(LAST_CHANNELS * width, 4):
        return ''
    return (f'checkpoint {checkpoint} holds GhostNet {held.arch} {held.width:g}x weights ({held.evidence}); the '
            f'config asks for GhostNet {arch} {width:g}x (arch={arch!r}, widen_factor={width:g}): give the weights '
            f'of that model (README, "Weights") or change arch / widen_factor.\n')


def describe_keys(title: str, keys: List[str], limit: int = 10) -> str:
    if not keys:
        return ''
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return f'\n  {title} ({len(keys)}): ' + ', '.join(keys[:limit]) + more


def convert_checkpoint(src: str, dst: str, trust: bool = False, trust_sha256: Optional[str] = None,
                       whole: bool = False, prefix: Optional[str] = None, keep_head: bool = False,
                       layout: str = 'backbone') -> Dict[str, int]:
    """Rewrite a checkpoint as a data-only file that loads with ``weights_only=True``.

    Default: the GhostNet weights of a timm / official / mmengine checkpoint (any
    ``state_dict`` / ``model`` nesting, official v3 names, ``prefix`` stripped) as
    ``{'state_dict': ...}``, ready for ``init_cfg=dict(type='Pretrained', checkpoint=dst)``.
    ``layout='mmpretrain'``: backbone and classifier head as an mmpretrain ImageClassifier
    (``configs/ghostnet/ghostnet-v*_in1k.py``) loads them.
    ``src``: a path (``.safetensors`` too), a hub name (``timm/ghostnet_100.in1k``, ``hf-hub:...``) or a URL.
    ``whole=True``: the entire checkpoint (e.g. a Runner checkpoint, to resume from) re-saved.
    ``trust=True`` (this file, resolved now) or ``trust_sha256`` (exactly this content) allows
    full unpickling of ``src``, which can run code: only for files you trust.
    """
    if trust and hub_name(src):  # trust the file the hub name stands for, in the Hugging Face cache
        entries = [resolve_hub_weights(src)]
    else:
        entries = [osp.abspath(src)] if trust and '://' not in src else []
    entries += [trust_sha256] if trust_sha256 else []
    with trusted_checkpoints(*entries):
        checkpoint = read_any_checkpoint(src, map_location='cpu')
    if whole:
        torch.save(plain_data(checkpoint, src), dst)
        torch.load(dst, map_location='cpu', weights_only=True)  # what was written is plain data
        return {'keys': len(checkpoint) if isinstance(checkpoint, dict) else 1}
    state_dict = convert_official_keys(unwrap_state_dict(checkpoint), prefix)
    if layout == 'mmpretrain':
        state_dict = {k: v for k, v in state_dict.items() if torch.is_tensor(v)}
        torch.save({'state_dict': to_mmpretrain(state_dict)}, dst)
        return {'tensors': len(state_dict), 'layout': 'mmpretrain'}
    if layout != 'backbone':
        raise ValueError(f"layout must be 'backbone' or 'mmpretrain', got {layout!r}")
    dropped = [k for k in state_dict if HEAD_KEY_PATTERN.match(k)] if not keep_head else []
    state_dict = {k: v for k, v in state_dict.items() if k not in dropped and torch.is_tensor(v)}
    if not state_dict:
        raise CheckpointKeyError(f'{src} holds no tensors' + (f' under prefix {prefix!r}' if prefix else ''))
    torch.save({'state_dict': state_dict}, dst)
    return {'tensors': len(state_dict), 'dropped_head_keys': len(dropped)}
