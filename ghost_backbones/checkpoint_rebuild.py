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
types, storage-only persistent ids); :func:`finalize` then turns our placeholders into real
arrays (all together no larger than the file), dtypes and HistoryBuffers (at most
``MAX_TREE_ITEMS`` values together), walking a state_dict's ``_metadata`` too (dictionaries carry
no other attribute; it holds versions only), refusing functions as values, and checks every
tensor: a plain strided tensor, as a state_dict holds, carrying no Python attributes, grad or
hooks (they would hide tensors from this walk, or shadow the methods it calls), no negation or
conjugation bit, of no quantized or opaque dtype, viewing no more bytes than its storage holds,
all storages together no larger than the file; bools, in tensors and numpy data, only of the
bytes 0 and 1; the whole object, counted as a tree (shared items once per reference), at most
``MAX_TREE_ITEMS`` items and a few times the file's bytes.
"""
import math
import re
import reprlib
from collections import Counter, OrderedDict
from typing import NamedTuple

import numpy as np
import torch

from .checkpoint_errors import Refused
from .checkpoint_scan import MAX_DEPTH

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
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
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


# ---------------------------------------------------------------------------- after loading

# dtypes no torch kernel reads (bits, and the sub-byte shells of tensor subclasses): no state_dict holds them
OPAQUE_DTYPES = tuple(getattr(torch, name) for name in (
    'bits1x8', 'bits2x4', 'bits4x2', 'bits8', 'bits16', *(f'{sign}int{bits}' for sign in ('u', '') for bits in range(1, 8)))
    if hasattr(torch, name))
KEY_TYPES = (str, bytes, int, bool, type(None))  # what the scan lets be a dictionary key
MAX_TREE_ITEMS = 10 ** 6  # a Runner checkpoint of a large model holds some 10**4; deepcopy takes ~1 s per 10**6
TREE_BYTES_PER_FILE_BYTE, TREE_BYTES_SLACK = 8, 16 << 20  # bytes counted once per reference: tied weights twice


def check_tensor(tensor: torch.Tensor) -> None:
    """A plain strided tensor: no attributes, grad or hooks (checked first, since an
    attribute can shadow the methods called below), no negation or conjugation bit (it would read
    as other numbers than its bytes), no quantized or opaque dtype; a dense tensor may not view more
    bytes than its storage holds (stride-0 or overlapping views of a tiny storage would turn a small
    file into gigabytes at the first copy); bools only of the bytes 0 and 1. Sparse tensors are
    refused by the scan already (:mod:`ghost_backbones.checkpoint_scan`); refused here again,
    whatever made one."""
    attributes = sorted(vars(tensor))
    if attributes:
        raise Refused(f'a tensor carrying the attributes {short(attributes)} (a state_dict\'s tensors have none)')
    if tensor.grad is not None or tensor._backward_hooks or tensor._post_accumulate_grad_hooks:
        raise Refused('a tensor carrying a grad or hooks (a state_dict\'s tensors have neither)')
    if tensor.layout is not torch.strided:
        raise Refused(f'a {tensor.layout} tensor of shape {tuple(tensor.shape)} (sparse tensors are not read as data)')
    if tensor.is_neg() or tensor.is_conj():
        raise Refused(f'a tensor of shape {tuple(tensor.shape)} with its {"negation" if tensor.is_neg() else "conjugation"}'
                      ' bit set (it reads as other numbers than its bytes; a state_dict\'s tensors have none)')
    if tensor.is_quantized:  # legitimate quantized tensors are refused by the scan (_rebuild_qtensor)
        raise Refused(f'a tensor of the quantized dtype {tensor.dtype} built as a plain tensor (no quantizer)')
    if tensor.dtype in OPAQUE_DTYPES:
        raise Refused(f'a tensor of the dtype {tensor.dtype} (no torch operation reads it; a state_dict holds none)')
    if tensor.device.type == 'meta':
        raise Refused(f'a meta tensor of shape {tuple(tensor.shape)} (no data)')
    check_empty_shape(tensor.shape, 'tensor')
    needed = tensor.numel() * tensor.element_size()
    held = tensor.untyped_storage().nbytes()
    if needed > held:
        raise Refused(f'a tensor of shape {tuple(tensor.shape)} and strides {tensor.stride()} viewing {needed} bytes '
                      f'of a {held}-byte storage')
    if tensor.dtype == torch.bool and tensor.numel() and tensor.view(torch.uint8).max() > 1:
        raise Refused(f'a bool tensor of shape {tuple(tensor.shape)} holding the byte '
                      f'{tensor.view(torch.uint8).max().item()} (a bool is the byte 0 or 1)')


class Finalizer:
    """One walk over a loaded object: placeholders replaced by real arrays, dtypes and
    HistoryBuffers, every tensor checked; the storages of all tensors together, and the numpy
    arrays together, no larger than the file (a storage resized after loading holds uninitialised
    memory; arrays can share one pickled byte string), the HistoryBuffers' values at most
    ``MAX_TREE_ITEMS`` (they can share one pickled list)."""

    def __init__(self, file_size: int):
        self.file_size, self.memo, self.storages = file_size, {}, {}
        self.array_bytes = self.history_values = 0

    def visit(self, obj):
        if id(obj) in self.memo:
            return self.memo[id(obj)]
        kind = type(obj)
        if kind is PendingArray:
            self.array_bytes += obj.nbytes()
            if self.array_bytes > self.file_size:
                raise Refused(f'numpy arrays of {self.array_bytes} bytes, in a {self.file_size}-byte file (arrays '
                              'sharing their pickled bytes)')
            result = obj.materialize()
        elif kind is PendingDtype:
            if not isinstance(obj.dtype, np.dtype):
                raise Refused('a numpy dtype without its code')
            result = obj.dtype
        elif kind is HistoryBufferState:
            self.history_values += obj.value_count()
            if self.history_values > MAX_TREE_ITEMS:
                raise Refused(f'HistoryBuffers of more than {MAX_TREE_ITEMS} values (buffers sharing a pickled list)')
            result = obj.build()
        elif kind is StatisticsName or obj is NdarrayName or isinstance(obj, type):
            raise Refused(f'{short(obj)} outside the place mmengine writes it')
        elif kind in (dict, OrderedDict, Counter):
            self.memo[id(obj)] = obj
            self.visit_dict(obj)
            return obj
        elif kind is list:
            self.memo[id(obj)] = obj
            obj[:] = [self.visit(item) for item in obj]
            return obj
        elif kind in (tuple, set):
            result = kind(self.visit(item) for item in obj)
        else:
            if isinstance(obj, torch.Tensor):
                self.visit_tensor(obj)
            elif callable(obj):
                raise Refused(f'the function {short(obj)} as a value (a checkpoint holds data)')
            return obj  # tensors, numbers, strings, bytes, torch's own types
        self.memo[id(obj)] = result
        return result

    def visit_dict(self, obj) -> None:
        """Keys and values; the only attribute is a state_dict's ``_metadata`` (BUILD sets what a
        file gives: an ``items`` attribute would shadow the method a walk calls)."""
        attributes = getattr(obj, '__dict__', {})
        if set(attributes) - {'_metadata'}:
            raise Refused(f'a dictionary carrying the attributes {short(sorted(map(str, attributes)))} (a state_dict '
                          'carries only _metadata)')
        for key, value in list(dict.items(obj)):
            if type(key) not in KEY_TYPES:
                raise Refused(f'a dictionary key {short(key)} (keys are strings and small ints)')
            obj[key] = self.visit(value)
        if '_metadata' in attributes:
            attributes['_metadata'] = self.visit(checked_metadata(attributes['_metadata']))

    def visit_tensor(self, tensor: torch.Tensor) -> None:
        check_tensor(tensor)
        storage = tensor.untyped_storage()
        self.storages[(storage.device, storage.data_ptr())] = storage.nbytes()
        total = sum(self.storages.values())
        if total > self.file_size:
            raise Refused(f'tensors whose storages hold {total} bytes, in a {self.file_size}-byte file (a storage '
                          'grown after loading)')


METADATA_KEYS = {'version'}  # what Module.state_dict writes for each prefix
LOAD_DIRECTIVES = {'assign_to_params_buffers'}  # left by load_state_dict(assign=True) in the writer's process


def checked_metadata(metadata):
    """A state_dict's ``_metadata``: prefix -> {'version': int}. ``assign_to_params_buffers``, which
    torch leaves there after ``load_state_dict(assign=True)``, is dropped: read back, it would make
    a plain ``load_state_dict`` assign the file's tensors (aliased, of the file's dtype and device)
    instead of copying them."""
    if not isinstance(metadata, dict):
        raise Refused(f'a state_dict _metadata of type {type(metadata).__name__}')
    for prefix, entry in dict.items(metadata):
        if type(prefix) is not str or type(entry) is not dict or set(entry) - METADATA_KEYS - LOAD_DIRECTIVES:
            raise Refused(f'the state_dict _metadata entry {short(prefix)}: {short(entry)} (only a version)')
        if type(entry.get('version', 0)) not in (int, type(None)):
            raise Refused(f'the state_dict _metadata version {short(entry["version"])}')
        for key in LOAD_DIRECTIVES & set(entry):
            del entry[key]
    return metadata


def tree_cost(obj, costs: dict, open_containers: set) -> tuple:
    """``(items, bytes, height)`` of ``obj`` counted as a tree, each shared item once per reference
    (what a deepcopy, a recursive walk, a JSON dump or an optimizer's dtype cast of it handles);
    bytes of strings, bytes, tensors, arrays and logged values; the height checked here too (the
    scan's depth bound misses lists appended to while still empty). Containers holding themselves
    are refused."""
    if id(obj) in costs:
        return costs[id(obj)]
    if isinstance(obj, dict):
        children = [*dict.keys(obj), *dict.values(obj), *getattr(obj, '__dict__', {}).values()]
    elif isinstance(obj, (list, tuple, set)):
        children = obj
    else:
        return 1, leaf_bytes(obj), 1
    if id(obj) in open_containers:
        raise Refused(f'a {type(obj).__name__} that holds itself (a checkpoint is a tree)')
    open_containers.add(id(obj))
    items, nbytes, height = 1, 0, 1
    for child in children:
        child_items, child_bytes, child_height = tree_cost(child, costs, open_containers)
        items, nbytes, height = items + child_items, nbytes + child_bytes, max(height, child_height + 1)
    if height > MAX_DEPTH:
        raise Refused(f'containers nested more than {MAX_DEPTH} deep')
    open_containers.discard(id(obj))
    costs[id(obj)] = items, nbytes, height
    return items, nbytes, height


def leaf_bytes(obj) -> int:
    if isinstance(obj, (str, bytes)):
        return len(obj)
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    arrays = (getattr(obj, '_log_history', None), getattr(obj, '_count_history', None))  # a HistoryBuffer
    return sum(array.nbytes for array in arrays if isinstance(array, np.ndarray))


def finalize(obj, file_size: int):
    """Replace the placeholders of a loaded object by real arrays, dtypes and HistoryBuffers, check
    every tensor, and bound the object's cost as a tree (shared tuples that double at each level
    make a 1 kB file that a deepcopy walks for hours; one string referenced 5,000 times, a 500 MB
    JSON dump)."""
    result = Finalizer(file_size).visit(obj)
    items, nbytes, _ = tree_cost(result, {}, set())
    if items > MAX_TREE_ITEMS:
        raise Refused(f'an object of {items} items counted as a tree (shared items once per reference; at most '
                      f'{MAX_TREE_ITEMS})')
    limit = TREE_BYTES_PER_FILE_BYTE * file_size + TREE_BYTES_SLACK
    if nbytes > limit:
        raise Refused(f'an object of {nbytes} bytes counted as a tree, from a {file_size}-byte file (shared items '
                      f'once per reference; at most {TREE_BYTES_PER_FILE_BYTE}x the file + {TREE_BYTES_SLACK >> 20} MiB)')
    return result
