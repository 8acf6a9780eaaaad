"""What torch's ``weights_only`` unpickler is extended with: numpy and mmengine's HistoryBuffer as data.

An mmengine Runner checkpoint written without this package holds numpy arrays, dtypes and scalars
and mmengine's ``HistoryBuffer`` (with ``getattr(HistoryBuffer, 'min')`` and friends), which torch's
allow-list refuses. torch also declines to allow numpy itself: ``numpy.dtype`` and
``ndarray.__setstate__`` accept object, void and flag-carrying dtypes whose bytes a file controls.

So each of those names is mapped, by :func:`torch.serialization.safe_globals`, to a rebuilder of
ours (:data:`REBUILDERS`): numpy arrays, dtypes and scalars are rebuilt from their bytes for plain
numeric dtypes only, a ``HistoryBuffer`` through its constructor from numbers (never its
``__setstate__``, which updates a class-wide table), and ``getattr`` only for the statistics
names plain mmengine writes. torch's unpickler does the rest (BUILD only on instances of allowed
types, storage-only persistent ids). The rebuilders return placeholders (numpy bytes are not
copied while the pickle may still share them); :mod:`ghost_backbones.checkpoint_walk` turns them
into real objects after loading, and bounds what they cost together.
"""
import math
import re
import reprlib
from typing import NamedTuple

import numpy as np

from .checkpoint_errors import Refused
from .checkpoint_scan import MAX_DIMS

NUMERIC_KINDS = 'biufc'  # bool, signed / unsigned int, float, complex
STATISTICS_NAMES = ('min', 'max', 'current', 'mean')  # what mmengine's HistoryBuffer registers
_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlevel = 40, 40, 3


def short(value) -> str:
    """``repr`` of file data for a message, bounded (a nested value of a small file can be huge)."""
    return _short.repr(value)


# ---------------------------------------------------------------------------- numpy

class NdarrayName:
    """What the name ``numpy.ndarray`` stands for in a checkpoint: only :func:`reconstruct_array` takes it."""

    def __setstate__(self, state) -> None:  # an instance (NEWOBJ) must never take state (e.g. a __class__)
        raise Refused('state for numpy.ndarray itself')


def numeric_dtype(code) -> np.dtype:
    """A dtype from its pickled code ('f4', 'i8', ...), if it is a plain numeric one."""
    if not isinstance(code, str) or not re.fullmatch(r'[a-zA-Z?]\d{0,2}', code):
        raise Refused(f'numpy dtype {short(code)} (only numeric dtypes are data)')
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
            raise Refused(f'numpy dtype state {short(state)} (only plain numeric dtypes are data)')
        if state[1] in '<>':
            self.dtype = self.dtype.newbyteorder(state[1])


def real_dtype(value) -> np.dtype:
    if type(value) is not PendingDtype:
        raise Refused(f'numpy data with dtype {short(value)}')
    return value.dtype


class PendingArray:
    """``_reconstruct(ndarray, ...)`` then its BUILD state: checked here, copied from the pickled
    bytes by :meth:`materialize` after loading, once the walk has counted it (a state shared through
    the memo by many arrays would otherwise cost one copy each during the load)."""

    state = None

    def __setstate__(self, state) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise Refused('numpy array state of unexpected form')
        shape, dtype, fortran, raw = state[-4:]
        dtype = real_dtype(dtype)
        if not (isinstance(shape, tuple) and len(shape) <= MAX_DIMS and all(type(n) is int and n >= 0 for n in shape)):
            raise Refused(f'numpy array shape {short(shape)}')
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dtype.itemsize:  # (exact: no overflow)
            raise Refused(f'numpy array of shape {shape} and dtype {dtype}: its data is not {dtype.itemsize}-byte '
                          'numbers of that count')
        check_empty_shape(shape, 'numpy array')
        self.state = (shape, dtype, bool(fortran), raw)

    def nbytes(self) -> int:
        return len(self.state[3]) if self.state else 0

    def materialize(self) -> np.ndarray:
        if self.state is None:
            raise Refused('a numpy array without data')
        shape, dtype, fortran, raw = self.state
        check_bool_bytes(raw, dtype, 'numpy bool array')
        return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order='F' if fortran else 'C').copy()


MAX_EMPTY_ROWS = 1 << 16  # an empty array of shape (N, 0) holds no bytes but N rows: tolist() makes N lists


def check_empty_shape(shape, what: str) -> None:
    """An empty array or tensor may not have more than ``MAX_EMPTY_ROWS`` rows before its zero."""
    if 0 in shape and math.prod(max(n, 1) for n in shape) > MAX_EMPTY_ROWS:
        raise Refused(f'an empty {what} of shape {short(tuple(shape))} (more than {MAX_EMPTY_ROWS} empty rows)')


def check_bool_bytes(raw: bytes, dtype: np.dtype, what: str) -> None:
    """Bools are the bytes 0 and 1 (as numpy and torch write them, and as their kernels assume)."""
    other = bytes(raw).translate(None, b'\0\1') if dtype.kind == 'b' else b''
    if other:
        raise Refused(f'a {what} holding the byte {other[0]} (a bool is the byte 0 or 1)')


def reconstruct_array(subtype, shape, code):
    if subtype is not NdarrayName:
        raise Refused(f'numpy _reconstruct of {short(subtype)}')
    return PendingArray()


def empty_bytes(*args) -> bytes:
    """``bytes()``: how pickle protocol 2 writes ``b''`` (e.g. the data of an empty numpy array)."""
    if args:
        raise Refused('bytes built from arguments')
    return b''


def make_scalar(dtype, raw):
    dtype = real_dtype(dtype)
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise Refused(f'numpy scalar of dtype {dtype} from {len(raw) if isinstance(raw, bytes) else short(raw)} bytes')
    check_bool_bytes(raw, dtype, 'numpy bool scalar')
    return np.frombuffer(raw, dtype=dtype)[0].copy()


# ---------------------------------------------------------------------------- mmengine's HistoryBuffer

class StatisticsName(NamedTuple):
    """``getattr(HistoryBuffer, 'mean')`` in a checkpoint: a name, never the function."""
    name: str


class HistoryBufferState:
    """mmengine's ``HistoryBuffer`` as numbers, rebuilt with its constructor after loading."""

    state = None

    def __init__(self, log_history=(), count_history=(), max_length=1000000):
        self.state = dict(_log_history=log_history, _count_history=count_history, max_length=max_length)

    def __setstate__(self, state) -> None:
        allowed = {'_log_history', '_count_history', 'max_length', 'statistics_methods'}
        if not isinstance(state, dict) or not set(state) <= allowed:
            raise Refused(f'HistoryBuffer state with keys {short(sorted(map(str, state)) if isinstance(state, dict) else state)}')
        methods = state.get('statistics_methods', {})
        if not (isinstance(methods, dict) and all(isinstance(v, StatisticsName) for v in methods.values())):
            raise Refused('HistoryBuffer statistics that are not its own methods')
        self.state = {k: v for k, v in state.items() if k != 'statistics_methods'}

    def value_count(self) -> int:
        """How many numbers :meth:`build` makes arrays of (a list shared through the memo counts at each use)."""
        count = 0
        for key in ('_log_history', '_count_history'):
            values = (self.state or {}).get(key, ())
            if type(values) is PendingArray:
                count += math.prod(values.state[0]) if values.state else 0
            elif isinstance(values, (list, tuple)):
                count += len(values)
        return count

    def build(self):
        from mmengine.logging import HistoryBuffer
        if self.state is None:
            raise Refused('a HistoryBuffer without state')
        return checked_history_buffer(self.state.get('_log_history', ()), self.state.get('_count_history', ()),
                                      self.state.get('max_length', 1000000))


def checked_history_buffer(logs, counts, max_length):
    """mmengine's HistoryBuffer from numbers only: as many counts as values, a positive max_length."""
    from mmengine.logging import HistoryBuffer
    logs, counts = numbers(logs), numbers(counts)
    if type(max_length) is not int or max_length <= 0 or len(logs) != len(counts):
        raise Refused(f'HistoryBuffer with max_length {short(max_length)}, {len(logs)} values, {len(counts)} counts')
    return HistoryBuffer(logs, counts, max_length)


def numbers(values) -> list:
    values = values.materialize() if type(values) is PendingArray else values
    values = values.tolist() if isinstance(values, np.ndarray) else values
    if not (isinstance(values, (list, tuple)) and all(type(v) in (int, float, bool) for v in values)):
        raise Refused('HistoryBuffer values that are not numbers')
    if any(type(v) is int and not -2 ** 63 <= v < 2 ** 63 for v in values):  # (numpy would make an object array)
        raise Refused('HistoryBuffer values that are ints beyond 64 bits')
    return list(values)


def statistics_reference(owner, name):
    """The only ``getattr`` a checkpoint may use: HistoryBuffer's statistics methods, by name."""
    from mmengine.logging import HistoryBuffer
    names = set(STATISTICS_NAMES) | set(getattr(HistoryBuffer, '_statistics_methods', {}))
    if owner is not HistoryBufferState or name not in names:
        raise Refused(f'getattr({short(getattr(owner, "__name__", owner))}, {short(name)})')
    return StatisticsName(name)


# ---------------------------------------------------------------------------- the names

def rebuilders() -> dict:
    """Each global name a data checkpoint may use beyond torch's own allow-list -> our rebuilder."""
    names = {'numpy.ndarray': NdarrayName, 'numpy.dtype': PendingDtype,
             'builtins.getattr': statistics_reference, 'builtins.bytes': empty_bytes,
             'mmengine.logging.history_buffer.HistoryBuffer': HistoryBufferState,
             # instances of these are built by the rebuilders above; torch's BUILD needs their type listed
             f'{__name__}.PendingArray': PendingArray}
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):  # numpy < 2 and >= 2
        names[f'{module}._reconstruct'] = reconstruct_array
        names[f'{module}.scalar'] = make_scalar
    return names


REBUILDERS = rebuilders()
