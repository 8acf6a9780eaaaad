"""The walk over a loaded checkpoint: placeholders made real, every tensor checked, the cost bounded.

torch's ``weights_only`` unpickler, with our rebuilders (:mod:`ghost_backbones.checkpoint_rebuild`),
returns an object whose numpy parts are placeholders. :func:`finalize` turns them into real arrays
(all together no larger than the file), dtypes and HistoryBuffers (at most ``MAX_TREE_ITEMS``
values together), walking a state_dict's ``_metadata`` too (dictionaries carry no other attribute;
it holds versions only), refusing functions as values, and checks every tensor: a plain strided
tensor, as a state_dict holds, carrying no Python attributes, grad or hooks (they would hide
tensors from this walk, or shadow the methods it calls), no negation or conjugation bit, of no
quantized or opaque dtype, viewing no more bytes than its storage holds, all storages together no
larger than the file; bools only of the bytes 0 and 1. The whole object, counted as a tree
(shared items once per reference), is at most ``MAX_TREE_ITEMS`` items and a few times the
file's bytes.
"""
from collections import Counter, OrderedDict

import numpy as np
import torch

from .checkpoint_errors import Refused
from .checkpoint_rebuild import (HistoryBufferState, NdarrayName, PendingArray, PendingDtype, StatisticsName,
                                 check_empty_shape, short)
from .checkpoint_scan import MAX_DEPTH, MAX_DIMS

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
    attributes = vars(tensor)
    if type(attributes) is not dict:  # a __dict__ swapped for an OrderedDict: its own attributes hide from vars()
        raise Refused(f'a tensor whose __dict__ is a {type(attributes).__name__} (a state_dict\'s tensors have none)')
    if attributes:
        raise Refused(f'a tensor carrying the attributes {short(sorted(attributes))} (a state_dict\'s tensors have '
                      'none)')
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
    if tensor.dim() > MAX_DIMS:
        raise Refused(f'a tensor of {tensor.dim()} dimensions (at most {MAX_DIMS}; tolist() of 10**5 crashes)')
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
        self.file_size, self.memo, self.storages, self.metadata_checked = file_size, {}, {}, set()
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
            elif isinstance(obj, (torch.UntypedStorage, torch.storage.TypedStorage)):
                raise Refused(f'a storage of {obj.nbytes()} bytes outside a tensor (a state_dict holds tensors)')
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
            metadata = attributes['_metadata']
            if id(metadata) not in self.metadata_checked:  # (once, however many dictionaries share it)
                checked_metadata(metadata)
                self.metadata_checked.add(id(metadata))
            attributes['_metadata'] = self.visit(metadata)

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
