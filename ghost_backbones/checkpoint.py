"""Reading checkpoints as data, on torch's own hardened unpickler.

Every checkpoint is loaded with ``torch.load(..., weights_only=True)``: torch's allow-list, its
BUILD rule (only instances of allowed types) and its storage-only persistent ids apply, and
whatever torch hardens later applies too. The package extends it only by names, for the
duration of each load (:func:`torch.serialization.safe_globals`): the numpy, ``HistoryBuffer``
and ``getattr`` names an mmengine Runner checkpoint holds map to rebuilders of ours
(:mod:`ghost_backbones.checkpoint_rebuild`), whose placeholders a walk then makes real, checking
every tensor (:mod:`ghost_backbones.checkpoint_walk`). Before unpickling, the zip directory and the pickle
are checked for what torch's allow-list still lets a small file do (gigabyte allocations,
hash-collision sets, deflate bombs, sparse tensors; :mod:`ghost_backbones.checkpoint_scan`), and
the legacy non-zip format is refused.

A file is read once: the bytes checked are the bytes unpickled. Anything refused raises
:class:`UnsafeCheckpointError` naming the file and the refused thing; content the user trusts
(:mod:`ghost_backbones.checkpoint_trust`) is then fully unpickled instead.
"""
import io
import logging
import os.path as osp
import pickle
import struct
import zipfile
from collections import Counter, OrderedDict

import torch
from mmengine.logging import print_log

from .checkpoint_errors import CheckpointError, Refused, UnsafeCheckpointError
from .checkpoint_rebuild import REBUILDERS
from .checkpoint_scan import LegacyFormat, scan_archive
from .checkpoint_trust import TRUSTED_ENV, read_regular_file, trusted_by, trusted_checkpoints
from .checkpoint_walk import finalize

__all__ = ['CheckpointError', 'UnsafeCheckpointError', 'load_checkpoint_file', 'load_checkpoint_bytes',
           'read_checkpoint', 'plain_data', 'trusted_checkpoints', 'TRUSTED_ENV']


def allowed_globals() -> set:
    """torch's own allow-list and our rebuilders' names: what the scan lets through."""
    from torch import _weights_only_unpickler
    return set(_weights_only_unpickler._get_allowed_globals()) | set(REBUILDERS)


def entry_name(entry) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


def unpickle_as_data(data: bytes, map_location=None):
    """``torch.load(weights_only=True)`` with our rebuilders in place of their names for this call.

    An entry of the user's own allow-list under one of those names is set aside for the call (so
    that a user's ``add_safe_globals([np.ndarray])`` cannot stand in for our checked rebuilder)
    and restored after it, as is everything else of torch's list.
    """
    ours = [(rebuilder, name) for name, rebuilder in REBUILDERS.items()]
    shadowing = [e for e in torch.serialization.get_safe_globals() if entry_name(e) in REBUILDERS]
    if shadowing:
        torch.serialization._weights_only_unpickler._remove_safe_globals(shadowing)
    try:
        with torch.serialization.safe_globals(ours):
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    finally:
        if shadowing:
            torch.serialization.add_safe_globals(shadowing)


def torch_refusal(error: pickle.UnpicklingError) -> str:
    """The reason in torch's 'Weights only load failed' message."""
    text = str(error)
    marker = 'WeightsUnpickler error:'
    reason = text.split(marker, 1)[1] if marker in text else text
    return first_line(reason)


def load_as_data(data: bytes, map_location=None):
    """Scan, unpickle with torch's weights-only unpickler, rebuild. Raises Refused or CheckpointError-ish errors."""
    scan_archive(data, allowed_globals())
    try:
        checkpoint = unpickle_as_data(data, map_location)
    except pickle.UnpicklingError as error:
        raise Refused(f'what torch\'s weights-only unpickler refuses: {torch_refusal(error)}') from None
    return finalize(checkpoint, file_size=len(data))


def refusal_message(name: str, refused: Refused, mismatch: str) -> str:
    if isinstance(refused, LegacyFormat):
        return (f'refused to load {name}: it is in {refused}.{mismatch} If you trust it, re-save it once in the '
                f'current format: python tools/convert_weights.py --trust --whole {name} OUT.pth')
    return (f'refused to load {name}: it asks for {refused}, which is not plain data (unpickling it could run code, '
            f'corrupt memory or exhaust it).{mismatch} If you trust this file (e.g. a checkpoint written by an old '
            f'tool), trust its exact content with {TRUSTED_ENV}=sha256:<sha256sum of the file> (or its absolute '
            f'path), or re-save it once as plain data: python tools/convert_weights.py --trust --whole {name} OUT.pth')


def load_checkpoint_bytes(data: bytes, name: str, map_location=None):
    """Unpickle a checkpoint's bytes as data; fully only if these exact bytes are trusted."""
    try:
        return load_as_data(data, map_location)
    except Refused as refused:
        entry, mismatch = trusted_by(data, name)
        if entry is None:
            raise UnsafeCheckpointError(refusal_message(name, refused, mismatch)) from None
        print_log(f'loading trusted checkpoint {name} (sha256 {entry.sha256}) with full unpickling',
                  logger='current', level=logging.WARNING)
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    except RecursionError:
        raise CheckpointError(f'{name} is nested too deeply to be a checkpoint') from None
    except MemoryError:
        raise CheckpointError(f'{name} needs more memory than this process may use') from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, TypeError, OSError,
            KeyError, IndexError, AttributeError, UnicodeDecodeError, ArithmeticError, AssertionError,
            struct.error) as error:  # (struct.error: a zip record read past its end)
        raise CheckpointError(f'{name} is not a readable PyTorch checkpoint (truncated or another kind of file): '
                              f'{first_line(str(error))}') from None


def read_checkpoint(filename: str) -> bytes:
    """The file's bytes, read once; non-regular files (FIFOs, devices) refused before reading."""
    return read_regular_file(filename)


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load`` for a local checkpoint, as data (see the module docstring)."""
    filename = osp.expanduser(filename)
    return load_checkpoint_bytes(read_checkpoint(filename), filename, map_location)


def plain_data(obj, where: str = 'checkpoint'):
    """``obj`` as what plain ``torch.load(weights_only=True)`` reads: tensors, numbers, strings,
    bytes, None and dicts / lists / tuples of them. numpy arrays and scalars become lists and
    numbers, a HistoryBuffer the plain form mmengine's MessageHub reads back with this package
    (:func:`ghost_backbones.compat.history_buffer_as_plain`), dict subclasses dicts (OrderedDict
    and Counter stay). Anything else is an error naming where it is."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    from .compat import history_buffer_as_plain
    if isinstance(obj, (np.ndarray, np.generic)):  # (before numbers: np.float64 is a float)
        return obj.tolist()
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, torch.Tensor, torch.Size,
                                       torch.device, torch.dtype)):
        return obj
    if isinstance(obj, HistoryBuffer):
        return history_buffer_as_plain(obj)
    if isinstance(obj, dict):
        kind = type(obj) if type(obj) in (OrderedDict, Counter) else dict
        return kind((plain_data(key, where), plain_data(value, f'{where}[{key!r}]')) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        items = [plain_data(item, f'{where}[{i}]') for i, item in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, (set, frozenset)):
        return {plain_data(item, where) for item in obj}
    raise CheckpointError(f'{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which cannot be written '
                          'as plain data')


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines or [''])[0][:300]
