"""Reading checkpoints as data: nothing in a checkpoint file can run code or corrupt memory.

A PyTorch checkpoint is a pickle, and a pickle may call any function it names. torch's
``weights_only=True`` restricts the names, but an mmengine Runner checkpoint also holds numpy
arrays, dtypes and scalars and mmengine's ``HistoryBuffer``, and torch declines to allow-list
numpy: ``numpy.dtype`` and ``ndarray.__setstate__`` accept object, void and flag-carrying dtypes
whose bytes a file controls (pointers read from the file: a crash on the next ``deepcopy``).

So checkpoints are unpickled by :class:`DataUnpickler`: every global a pickle names is looked up
in an allow-list of *our* rebuilders and torch's own tensor rebuilders, never imported. numpy
arrays, dtypes and scalars are rebuilt from their bytes for numeric dtypes only; a
``HistoryBuffer`` is rebuilt through its constructor from numbers (never ``__setstate__``, which
updates a class-wide table); ``getattr`` is honoured only for the references plain mmengine
writes (``getattr(HistoryBuffer, 'min')`` and the other statistics names). Anything else is
refused with :class:`UnsafeCheckpointError` naming the file and the refused thing.

Trust is explicit and exact: the sha256 of a file's content, or an absolute path resolved once
(``GHOST_BACKBONES_TRUSTED_CHECKPOINTS``, ``os.pathsep``-separated; or :func:`trusted_checkpoints`
in code, a context manager). The bytes are read once: the bytes checked are the bytes unpickled.
"""
import contextlib
import contextvars
import functools
import hashlib
import io
import logging
import os
import os.path as osp
import pickle
import re
import stat
from collections import Counter, OrderedDict
from typing import Iterable, NamedTuple, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import print_log

TRUSTED_ENV = 'GHOST_BACKBONES_TRUSTED_CHECKPOINTS'
NUMERIC_KINDS = 'biufc'  # bool, signed / unsigned int, float, complex
STATISTICS_NAMES = ('min', 'max', 'current', 'mean')  # what mmengine's HistoryBuffer registers


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle asks for more than data (code, or memory it could corrupt)."""


class Refused(Exception):
    """Raised while unpickling; the loader turns it into an UnsafeCheckpointError naming the file."""


# ---------------------------------------------------------------------------- numpy, rebuilt by us

class NdarrayName:
    """What the name ``numpy.ndarray`` stands for in a pickle: only :func:`reconstruct_array` takes it."""


def numeric_dtype(code) -> np.dtype:
    """A dtype from its pickled code ('f4', 'i8', ...), if it is a plain numeric one."""
    if not isinstance(code, str) or not re.fullmatch(r'[a-zA-Z?]\d{0,2}', code):
        raise Refused(f'numpy dtype {code!r} (only numeric dtypes are data)')
    dtype = np.dtype(code)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise Refused(f'numpy dtype {code!r} of kind {dtype.kind!r} (only numeric dtypes are data)')
    return dtype


class PendingDtype:
    """``numpy.dtype(code, align, copy)`` then its BUILD state: checked, then a real dtype."""

    def __init__(self, code, align=False, copy=True):
        self.dtype = numeric_dtype(code)

    def __setstate__(self, state) -> None:
        # a numeric dtype's state: (3, byte order, None, None, None, -1, -1, 0); anything else
        # (fields, names, sub-arrays, a custom item size or alignment, flags) is not plain data
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in '<>|='
                and state[2:5] == (None, None, None) and state[5:] == (-1, -1, 0)):
            raise Refused(f'numpy dtype state {state!r} (only plain numeric dtypes are data)')
        if state[1] in '<>':
            self.dtype = self.dtype.newbyteorder(state[1])


def real_dtype(value) -> np.dtype:
    if not isinstance(value, PendingDtype):
        raise Refused(f'numpy data with dtype {value!r}')
    return value.dtype


class PendingArray:
    """``_reconstruct(ndarray, ...)`` then its BUILD state: an array copied from the pickled bytes."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise Refused('numpy array state of unexpected form')
        shape, dtype, fortran, raw = state[-4:]
        dtype = real_dtype(dtype)
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise Refused(f'numpy array shape {shape!r}')
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != int(np.prod(shape)) * dtype.itemsize:
            raise Refused(f'numpy array of shape {shape} and dtype {dtype}: its data is not {dtype.itemsize}-byte '
                          'numbers of that count')
        self.array = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order='F' if fortran else 'C').copy()


def reconstruct_array(subtype, shape, code):
    if subtype is not NdarrayName:
        raise Refused(f'numpy _reconstruct of {subtype!r}')
    return PendingArray()


def make_scalar(dtype, raw):
    dtype = real_dtype(dtype)
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise Refused(f'numpy scalar of dtype {dtype} from {len(raw) if isinstance(raw, bytes) else raw!r} bytes')
    return np.frombuffer(raw, dtype=dtype)[0].copy()


# ---------------------------------------------------------------------------- mmengine's HistoryBuffer

class StatisticsName(NamedTuple):
    """``getattr(HistoryBuffer, 'mean')`` in an old pickle: a name, never the function."""
    name: str


class HistoryBufferState:
    """mmengine's ``HistoryBuffer`` as numbers, rebuilt with its constructor after loading."""

    def __init__(self, log_history=(), count_history=(), max_length=1000000):
        self.state = dict(_log_history=log_history, _count_history=count_history, max_length=max_length)

    def __setstate__(self, state) -> None:
        allowed = {'_log_history', '_count_history', 'max_length', 'statistics_methods'}
        if not isinstance(state, dict) or not set(state) <= allowed:
            raise Refused(f'HistoryBuffer state with keys {sorted(state) if isinstance(state, dict) else state!r}')
        methods = state.get('statistics_methods', {})
        if not (isinstance(methods, dict) and all(isinstance(v, StatisticsName) for v in methods.values())):
            raise Refused('HistoryBuffer statistics that are not its own methods')
        self.state = {k: v for k, v in state.items() if k != 'statistics_methods'}

    def build(self):
        from mmengine.logging import HistoryBuffer
        logs, counts = (numbers(self.state.get(key, ())) for key in ('_log_history', '_count_history'))
        max_length = self.state.get('max_length', 1000000)
        if type(max_length) is not int or max_length <= 0 or len(logs) != len(counts):
            raise Refused(f'HistoryBuffer with max_length {max_length!r}, {len(logs)} values, {len(counts)} counts')
        return HistoryBuffer(logs, counts, max_length)


def numbers(values) -> list:
    values = values.array if isinstance(values, PendingArray) else values
    values = values.tolist() if isinstance(values, np.ndarray) else values
    if not (isinstance(values, (list, tuple)) and all(type(v) in (int, float, bool) for v in values)):
        raise Refused('HistoryBuffer values that are not numbers')
    return list(values)


def statistics_reference(owner, name):
    """The only ``getattr`` a checkpoint may use: HistoryBuffer's statistics methods, by name."""
    from mmengine.logging import HistoryBuffer
    names = set(STATISTICS_NAMES) | set(getattr(HistoryBuffer, '_statistics_methods', {}))
    if owner is not HistoryBufferState or name not in names:
        raise Refused(f'getattr({getattr(owner, "__name__", owner)!r}, {name!r})')
    return StatisticsName(name)


# ---------------------------------------------------------------------------- the unpickler

def data_globals() -> dict:
    """Every global a data checkpoint may name, mapped to what it stands for."""
    ours = {'numpy.ndarray': NdarrayName, 'numpy.dtype': PendingDtype,
            'builtins.getattr': statistics_reference, 'builtins.frozenset': frozenset,
            'mmengine.logging.history_buffer.HistoryBuffer': HistoryBufferState}
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):  # numpy < 2 and >= 2
        ours[f'{module}._reconstruct'] = reconstruct_array
        ours[f'{module}.scalar'] = make_scalar
    from torch import _weights_only_unpickler
    return dict(_weights_only_unpickler._get_allowed_globals(), **ours)


PYTHON2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}  # pickle protocol 2 names


class DataUnpickler(pickle.Unpickler):
    """Python's documented way to restrict a pickle: every global goes through ``find_class``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.allowed = data_globals()

    def find_class(self, module, name):
        module = PYTHON2_MODULES.get(module, module)
        if f'{module}.{name}' not in self.allowed:
            raise Refused(f'the global {module}.{name}')
        return self.allowed[f'{module}.{name}']


def data_load(file, **kwargs):
    return DataUnpickler(file, **kwargs).load()


# what torch.load calls ``pickle_module``: its Unpickler class and load function
DATA_PICKLE = type(pickle)('ghost_backbones_data_pickle')
DATA_PICKLE.Unpickler, DATA_PICKLE.load = DataUnpickler, data_load


def finalize(obj, memo: dict):
    """Replace the placeholders of a loaded object by real arrays, dtypes and HistoryBuffers."""
    if id(obj) in memo:
        return memo[id(obj)]
    kind = type(obj)
    if kind is PendingArray:
        if obj.array is None:
            raise Refused('a numpy array without data')
        result = obj.array
    elif kind is PendingDtype:
        result = obj.dtype
    elif kind is HistoryBufferState:
        result = obj.build()
    elif kind is StatisticsName or obj is NdarrayName:
        raise Refused(f'{obj!r} outside the place mmengine writes it')
    elif kind in (dict, OrderedDict, Counter):
        memo[id(obj)] = obj
        for key, value in list(obj.items()):
            if isinstance(key, (PendingArray, PendingDtype, HistoryBufferState)):
                raise Refused('a numpy object used as a dictionary key')
            obj[key] = finalize(value, memo)
        return obj
    elif kind is list:
        memo[id(obj)] = obj
        obj[:] = [finalize(item, memo) for item in obj]
        return obj
    elif kind in (tuple, set, frozenset):
        result = kind(finalize(item, memo) for item in obj)
    else:
        return obj  # tensors, numbers, strings, bytes, torch's own types
    memo[id(obj)] = result
    return result


# ---------------------------------------------------------------------------- trust

class TrustEntry(NamedTuple):
    """A content hash, or a file identity (device, inode) taken when the trust was given."""
    sha256: Optional[str] = None
    identity: Optional[Tuple[int, int]] = None
    path: Optional[str] = None


def trust_entry(entry: str, source: str) -> TrustEntry:
    """``entry``: 64 hex digits (the sha256 of the content) or an absolute path, resolved now."""
    entry = entry.strip()
    if re.fullmatch(r'(sha256:)?[0-9a-fA-F]{64}', entry):
        return TrustEntry(sha256=entry[-64:].lower())
    if not osp.isabs(entry):
        raise CheckpointError(f'trusted checkpoint {entry!r} ({source}) is not an absolute path: give an absolute '
                              'path or the sha256 of the file (sha256sum FILE)')
    real = osp.realpath(entry)
    try:
        info = os.stat(real)
    except OSError as error:
        raise CheckpointError(f'trusted checkpoint {entry!r} ({source}) cannot be read: {error}') from None
    return TrustEntry(identity=(info.st_dev, info.st_ino), path=real)


@functools.lru_cache(maxsize=8)
def environment_trust(value: str) -> Tuple[TrustEntry, ...]:
    """The entries of ``GHOST_BACKBONES_TRUSTED_CHECKPOINTS``, resolved once per value."""
    return tuple(trust_entry(part, TRUSTED_ENV) for part in value.split(os.pathsep) if part.strip())


_scoped_trust: contextvars.ContextVar = contextvars.ContextVar('ghost_backbones_trusted_checkpoints', default=())


@contextlib.contextmanager
def trusted_checkpoints(*entries: str):
    """Within the block, the given checkpoints (absolute paths, resolved now, or sha256 digests of
    their content) may be fully unpickled. Only for files you trust: unpickling can run code."""
    token = _scoped_trust.set(_scoped_trust.get() + tuple(trust_entry(e, 'trusted_checkpoints()') for e in entries))
    try:
        yield
    finally:
        _scoped_trust.reset(token)


def trust_entries() -> Iterable[TrustEntry]:
    return _scoped_trust.get() + environment_trust(os.environ.get(TRUSTED_ENV, ''))


def is_trusted(data: bytes, identity: Optional[Tuple[int, int]]) -> bool:
    """Whether these exact bytes (read from the file ``identity``, if any) are trusted."""
    entries = list(trust_entries())
    if not entries:
        return False
    digest = hashlib.sha256(data).hexdigest()
    return any(e.sha256 == digest or (identity is not None and e.identity == identity) for e in entries)


# ---------------------------------------------------------------------------- loading

def read_checkpoint(filename: str) -> Tuple[bytes, Tuple[int, int]]:
    """The file's bytes and identity (device, inode), read once through one open file."""
    try:
        with open(filename, 'rb') as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CheckpointError(f'checkpoint {filename} is not a regular file')
            return f.read(), (info.st_dev, info.st_ino)
    except FileNotFoundError:
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.') from None


def load_checkpoint_bytes(data: bytes, name: str, map_location=None, identity: Optional[Tuple[int, int]] = None):
    """Unpickle a checkpoint's bytes as data; fully only if these bytes are trusted."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False,
                                pickle_module=DATA_PICKLE)
        return finalize(checkpoint, {})
    except Refused as refused:
        if is_trusted(data, identity):
            print_log(f'loading trusted checkpoint {name} with full unpickling', logger='current',
                      level=logging.WARNING)
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
        raise UnsafeCheckpointError(
            f'refused to load {name}: it asks for {refused}, which is not plain data (unpickling it could run code '
            f'or corrupt memory). If you trust this file (e.g. a checkpoint written by an old tool), trust its exact '
            f'content with {TRUSTED_ENV}=<sha256 of the file> (or an absolute path), or re-save it once as plain '
            f'data: python tools/convert_weights.py --trust --whole {name} OUT.pth') from None
    except RecursionError:
        raise CheckpointError(f'{name} is nested too deeply to be a checkpoint') from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, OSError, KeyError,
            IndexError, AttributeError) as error:
        raise CheckpointError(f'{name} is not a readable PyTorch checkpoint (truncated or another kind of file): '
                              f'{first_line(str(error))}') from None


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load`` for a local checkpoint, as data (see the module docstring)."""
    filename = osp.expanduser(filename)
    data, identity = read_checkpoint(filename)
    return load_checkpoint_bytes(data, filename, map_location, identity)


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines or [''])[0][:300]
