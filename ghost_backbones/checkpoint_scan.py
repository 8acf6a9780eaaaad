"""Bounds checked before a checkpoint is unpickled: what torch's own allow-list still lets a small
file do.

torch's ``weights_only`` unpickler allows ``bytearray(n)`` (an 857-byte file allocating
gigabytes), sets and Counters of any hashable (a few hundred kilobytes of hash-colliding numbers
taking minutes to insert), reads zip entries of any compression (a deflate bomb), and rebuilds
sparse tensors whose cost no size in the file bounds (10**8 entries of stride-0 indices in 2 kB,
a dense shape of 10**10, indices shared with a tensor changed later), validating their indices
only from torch 2.14 on. mmengine, mmdet, mmseg, timm and a module's state_dict never hold any of
these, so they are refused:

* the archive: a torch zip (torch >= 1.6) whose entries are stored, not compressed, each no larger
  than the file, with its central directory where the end record declares it, the same entries
  for torch's reader as for this check and each entry's bytes apart from the others'; the legacy
  non-zip format is refused (its loader acts on persistent ids that are not storages: torch appends
  a "patch" file for a ``('module', ...)`` id);
* the pickle torch will unpickle (read through torch's own zip reader, which finds records
  case-insensitively: names that collide so are refused), read once with
  :func:`pickletools.genops` and a stack of *kinds* (never objects): globals only from torch's
  allow-list and our rebuilders, less ``bytearray``; calls (REDUCE, NEWOBJ) only of the globals
  torch.save, numpy and mmengine call, with a tuple of arguments, at most ``MAX_HISTORY_BUFFERS``
  HistoryBuffers, never NEWOBJ of a Parameter, never of a call's result, never of the sparse tensor
  rebuilder; ``_rebuild_from_type_v2`` only around torch's dense tensor rebuilders (its inner call
  checked as a direct one), and neither it nor ``_rebuild_parameter_with_state`` with state to set
  on the tensor (beyond an empty plain dictionary); BUILD only on dictionaries, from a plain
  dictionary, and on our numpy and HistoryBuffer placeholders (never on a rebuilt tensor: torch
  would ``set_`` it to any storage, size and strides; never on a storage: its dtype); storages named
  as torch.save names them, no two keys for one record, all together no larger than the file; each
  tensor's offset, size (at most ``MAX_DIMS`` dimensions) and strides within its storage; at most
  ``MAX_TENSORS`` tensors, and one per ``BYTES_PER_TENSOR`` bytes of the file beyond ``MIN_TENSORS``;
  call arguments, persistent ids and BUILD states each used once (pickle writes them afresh; the memo
  let 3 bytes re-run a call), what ``_codecs.encode``, ``set``, ``Counter`` and ``torch.Size`` copy
  no more than the file's size; no ``meta`` storages (torch caches none); dictionary
  keys and set / Counter elements only strings, bytes, bools, None and ints of identity hash
  (``|i| < 2**61 - 1``); ``set`` only of a list, ``Counter`` only of a dict, ``OrderedDict`` only
  empty; ``_codecs.encode`` only to latin-1; items added only to lists and dictionaries the pickle
  itself made; nesting at most ``MAX_DEPTH`` deep.
"""
import functools
import io
import pickletools
import struct
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

from .checkpoint_errors import Refused

ZIP_MAGIC = b'PK\x03\x04'
LEGACY_MAGIC = b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19'  # protocol 2, long 0x1950a86a20f9469cfc6c
DENIED_GLOBALS = {'builtins.bytearray'}
HASH_MODULUS = 2 ** 61 - 1  # ints below it hash to themselves: they cannot collide
SAFE_KEY_KINDS = ('str', 'bytes', 'bool', 'none')
MAX_DEPTH = 100  # checkpoints nest a handful of levels; hashing a 300,000-deep tuple overflows the C stack
MAX_OBJECTS = 10 ** 6  # what the pickle makes (the walk bounds the result as a tree by the same number)
NOT_MADE = {'MARK', 'BINPUT', 'LONG_BINPUT', 'BINGET', 'LONG_BINGET', 'PROTO', 'STOP', 'APPEND', 'APPENDS', 'SETITEM',
            'SETITEMS', 'BUILD'}  # opcodes that make no object


class LegacyFormat(Refused):
    """A checkpoint in torch's pre-1.6 (non-zip) format."""


class Kind:
    """What the scan knows of a stack item: its kind, a short value, and for lists / dicts whether
    every element or key so far hashes without collisions."""

    __slots__ = ('kind', 'value', 'safe_items', 'items', 'depth', 'used', 'length')  # one per pickled item: small

    def __init__(self, kind: str, value=None, safe_items: bool = True, items=()):
        self.kind, self.value, self.safe_items, self.items, self.used = kind, value, safe_items, items, False
        self.length = len(items)
        self.depth = 1 + max((item.depth for item in items), default=0)
        if self.depth > MAX_DEPTH:
            raise Refused(f'containers nested more than {MAX_DEPTH} deep')

    def contains(self, item: 'Kind') -> None:
        """An item added to this list or dictionary: it is as deep as its deepest item, plus one."""
        self.length += 1
        self.depth = max(self.depth, item.depth + 1)
        if self.depth > MAX_DEPTH:
            raise Refused(f'containers nested more than {MAX_DEPTH} deep')

    def safe_key(self) -> bool:
        if self.kind == 'int':
            return abs(self.value) < HASH_MODULUS
        return self.kind in SAFE_KEY_KINDS

    def describe(self) -> str:
        return f'{self.kind} {self.value!r:.40}' if self.value is not None else self.kind


NONE, BOOL, FLOAT = Kind('none'), Kind('bool'), Kind('float')  # atoms, shared (never changed)
ATOMS = (NONE, BOOL, FLOAT)


def global_name(arg: str) -> str:
    """``module name`` of a GLOBAL opcode, with the Python 2 names mapped as torch maps them."""
    module, name = arg.split(' ', 1)
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f'{module}.{name}'


def scan_archive(data: bytes, allowed_globals) -> None:
    """Check the zip directory, then the pickle, of a checkpoint held in ``data``."""
    if data.startswith(LEGACY_MAGIC):
        raise LegacyFormat('the legacy (pre-1.6, non-zip) torch format, whose loader acts on more than data (it can '
                           'write files)')
    if not data.startswith(ZIP_MAGIC):
        raise ValueError('not a torch zip archive')
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = archive.infolist()
        end_record = zipfile._EndRecData(io.BytesIO(data))
        declared = end_record[zipfile._ECD_OFFSET]
        check_zip64_locator(data, end_record[zipfile._ECD_LOCATION])
        if archive.start_dir != declared:
            # zipfile then reads a directory where the end record does not put one; torch's reader (miniz) reads
            # the declared one: two views of the entries (a deflated entry seen as stored by this check)
            raise Refused(f'a zip central directory at {archive.start_dir} where the end record declares {declared}')
    names = [entry.filename.lower() for entry in entries]
    if len(set(names)) != len(names):
        raise Refused('zip entries whose names differ only in case (torch reads records case-insensitively)')
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            raise Refused(f'the compressed zip entry {entry.filename!r} (torch.save stores entries uncompressed; '
                          f'{entry.compress_size} bytes inflating to {entry.file_size})')
        if entry.file_size > len(data):
            raise Refused(f'the zip entry {entry.filename!r} declaring {entry.file_size} bytes in a '
                          f'{len(data)}-byte file')
    import torch
    reader = torch._C.PyTorchFileReader(io.BytesIO(data))  # the record torch itself will unpickle
    seen_by_torch = {name.lower() for name in reader.get_all_records()}
    seen_here = {name.split('/', 1)[-1] for name in names}
    if seen_by_torch != seen_here:
        raise Refused(f'zip entries that torch\'s reader sees otherwise ({short_set(seen_by_torch ^ seen_here)})')
    check_records_apart(data, entries)
    scan_pickle(reader.get_record('data.pkl'), allowed_globals, len(data))


ZIP64_LOCATOR, ZIP64_LOCATOR_SIZE, ZIP64_END_RECORD_SIZE = b'PK\x06\x07', 20, 56


def check_zip64_locator(data: bytes, end_record_position: int) -> None:
    """The zip64 end record where its locator points: zipfile reads the record just before the
    locator, torch's reader (miniz) the one at the locator's offset; two records, two directories."""
    position = end_record_position - ZIP64_LOCATOR_SIZE
    if position < 0 or data[position:position + 4] != ZIP64_LOCATOR:
        return
    _, _, offset, _ = struct.unpack('<4sLQL', data[position:position + ZIP64_LOCATOR_SIZE])
    if offset != position - ZIP64_END_RECORD_SIZE:
        raise Refused(f'a zip64 locator pointing at {offset}, not at the end record before it '
                      f'({position - ZIP64_END_RECORD_SIZE})')


LOCAL_HEADER = struct.Struct('<4s22xHH')  # signature, then (after 22 bytes) name and extra field lengths


def check_records_apart(data: bytes, entries) -> None:
    """Each entry's local header and data apart from every other's: directory entries sharing one
    record (or a record inside another's data) would make torch read the same bytes as many
    storages, a 1 MB file loading as a gigabyte."""
    extents = []
    for entry in entries:
        signature, name_length, extra_length = LOCAL_HEADER.unpack_from(data, entry.header_offset)
        if signature != ZIP_MAGIC:
            raise Refused(f'the zip entry {entry.filename!r} without its local header')
        end = entry.header_offset + LOCAL_HEADER.size + name_length + extra_length + entry.compress_size
        extents.append((entry.header_offset, end, entry.filename))
    extents.sort()
    for (_, end, name), (start, _, next_name) in zip(extents, extents[1:]):
        if start < end:
            raise Refused(f'the zip entries {name!r} and {next_name!r} sharing bytes (one record read as two)')


def short_set(names) -> str:
    return ', '.join(sorted(names)[:4]) + (', ...' if len(names) > 4 else '')


def scan_pickle(pickle_bytes: bytes, allowed_globals, file_size: int) -> None:
    """Follow the pickle's opcodes with kinds on the stack; refuse what data never needs."""
    stack, marks, memo = [], [], {}
    storages = StorageRecords(file_size)
    history_buffers = tensors = copied = made = 0
    max_tensors = min(MAX_TENSORS, max(MIN_TENSORS, file_size // BYTES_PER_TENSOR))

    def pop_mark():
        nonlocal stack
        items, stack = stack, marks.pop()
        return items

    def add_items(target: Kind, items, what: str):
        if target.kind not in ('list', 'dict'):
            raise Refused(f'{what} on a {target.describe()} (only on lists and dictionaries the pickle made)')
        for item in items:
            if target.kind == 'dict' and not item.safe_key():
                raise Refused(f'a dictionary key of kind {item.describe()} (keys are strings and small ints)')
            target.safe_items = target.safe_items and item.safe_key()
            target.contains(item)

    for opcode, arg, _ in pickletools.genops(pickle_bytes):
        name = opcode.name
        if name not in NOT_MADE:
            made += 1
            if made > MAX_OBJECTS:
                raise Refused(f'more than {MAX_OBJECTS} objects (a checkpoint of a large model holds some 10**5)')
        if name == 'GLOBAL':
            full = global_name(arg)
            if full in DENIED_GLOBALS or full not in allowed_globals:
                raise Refused(f'the global {full}')
            stack.append(Kind('global', full))
        elif name == 'REDUCE':
            args = use_once(stack.pop(), 'the arguments of a call')
            copied += copied_by(stack[-1], args)
            if copied > file_size:
                raise Refused(f'calls copying {copied} items or characters, in a {file_size}-byte file (what they '
                              'copy reused through the memo)')
            stack[-1] = reduce_kind(stack[-1], args)
        elif name == 'NEWOBJ':
            stack.pop()
            cls = stack.pop()
            if cls.kind != 'global' or cls.value not in NEWOBJ_CLASSES:
                raise Refused(f'creating a {cls.describe()} (NEWOBJ)')
            stack.append(Kind('dict', cls.value) if cls.value in DICT_TYPES else Kind('history buffer'))
        elif name == 'BUILD':
            state = use_once(stack.pop(), 'the state given by BUILD')
            if stack[-1].kind == 'tensor':
                # torch's unpickler would call Tensor.set_(*state): a legacy form torch.save never writes,
                # re-pointing a rebuilt tensor at any storage, offset, size and strides
                raise Refused('state set on a rebuilt tensor (BUILD; torch.save never writes it)')
            if stack[-1].kind not in BUILD_TARGETS:
                # torch.save writes BUILD for an OrderedDict's attributes, numpy and mmengine (checked by our
                # rebuilders); on a storage it would change its dtype, and so the bytes a tensor views
                raise Refused(f'state set on a {stack[-1].describe()} (BUILD)')
            if stack[-1].kind == 'dict' and not is_plain_dict(state):
                # torch's unpickler calls OrderedDict.__dict__.update(state): any iterable of pairs, whose keys
                # the checks of SETITEM never saw (hash-colliding ints: minutes from a few hundred kilobytes)
                raise Refused(f'attributes given to a dictionary as a {state.describe()} (a state_dict\'s are a plain '
                              'dictionary)')
        elif name == 'APPEND':
            item = stack.pop()
            add_items(stack[-1], [item], 'APPEND')
        elif name == 'APPENDS':
            items = pop_mark()
            add_items(stack[-1], items, 'APPENDS')
        elif name == 'SETITEM':
            value, key = stack.pop(), stack.pop()
            add_items(stack[-1], [key], 'SETITEM')
            stack[-1].contains(value)
        elif name == 'SETITEMS':
            items = pop_mark()
            add_items(stack[-1], items[0::2], 'SETITEMS')
            for value in items[1::2]:
                stack[-1].contains(value)
        elif name == 'MARK':
            if len(marks) >= MAX_DEPTH:
                raise Refused(f'more than {MAX_DEPTH} marks open (containers nested that deep)')
            marks.append(stack)
            stack = []
        elif name == 'TUPLE':
            items = tuple(pop_mark())
            stack.append(Kind('tuple', items=items))
        elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3'):
            count = int(name[-1])
            items = tuple(stack[-count:])
            del stack[-count:]
            stack.append(Kind('tuple', items=items))
        elif name == 'EMPTY_TUPLE':
            stack.append(Kind('tuple'))
        elif name == 'EMPTY_LIST':
            stack.append(Kind('list'))
        elif name == 'EMPTY_DICT':
            stack.append(Kind('dict'))
        elif name == 'EMPTY_SET':  # torch.save (protocol 2) pickles a set as a call of set on a list
            raise Refused('the pickle opcode EMPTY_SET (torch.save never writes it; a megabyte of them costs 18 s)')
        elif name in ('BININT', 'BININT1', 'BININT2', 'LONG1'):
            stack.append(Kind('int', arg))
        elif name == 'BINFLOAT':
            stack.append(FLOAT)
        elif name == 'BINUNICODE':
            stack.append(Kind('str', arg))
        elif name == 'SHORT_BINSTRING':  # genops decodes it as latin-1, torch's unpickler as UTF-8: as torch
            stack.append(Kind('str', arg.encode('latin-1').decode('utf-8')))
        elif name == 'NONE':
            stack.append(NONE)
        elif name in ('NEWTRUE', 'NEWFALSE'):
            stack.append(BOOL)
        elif name == 'BINPERSID':
            stack[-1] = storages.add(use_once(stack[-1], 'a storage\'s persistent id'))
        elif name in ('BINGET', 'LONG_BINGET'):
            if arg not in memo:
                raise ValueError(f'memo entry {arg} read before it is written')
            stack.append(memo[arg])
        elif name in ('BINPUT', 'LONG_BINPUT'):
            memo[arg] = stack[-1]
        elif name == 'STOP':
            if marks:
                raise Refused(f'{len(marks)} marks left open at the end of the pickle')
        elif name == 'PROTO':
            pass
        else:
            raise Refused(f'the pickle opcode {name} (torch\'s data-only unpickler does not read it)')
        if name in ('REDUCE', 'NEWOBJ') and stack[-1].kind == 'history buffer':
            history_buffers += 1
            if history_buffers > MAX_HISTORY_BUFFERS:
                raise Refused(f'more than {MAX_HISTORY_BUFFERS} HistoryBuffers (a MessageHub holds one per logged '
                              'value)')
        if name == 'REDUCE' and stack[-1].kind == 'tensor':
            tensors += 1
            if tensors > max_tensors:
                raise Refused(f'more than {max_tensors} tensors in a {file_size}-byte file (each costs some 30 us and '
                              f'600 bytes to rebuild; at most {MAX_TENSORS}, and one per {BYTES_PER_TENSOR} bytes '
                              f'beyond {MIN_TENSORS})')


def use_once(item: Kind, what: str) -> Kind:
    """``item``, marked used: pickle writes each call's arguments, each persistent id and each BUILD
    state afresh, so one used again comes from the memo (a 3-byte reference re-running a call,
    re-reading a record, or giving 100,000 keys to one more OrderedDict). Atoms are shared, never used up."""
    if item in ATOMS:
        return item
    if item.used:
        raise Refused(f'{what} used again through the memo (torch.save writes each afresh)')
    item.used = True
    return item


def filled_from(source: Kind, kind: str, value=None) -> Kind:
    """What a call fills from ``source`` (``Counter(d)``, ``set(l)``): as long and deep as it, so that a call
    copying it again is counted at its size (a Counter of a memoized Counter, 6 bytes a call, was counted as
    copying nothing: 247 kB took 3 GB)."""
    made = Kind(kind, value, safe_items=source.safe_items)
    made.length, made.depth = source.length, source.depth
    return made


COPYING_CALLS = ('builtins.set', 'collections.Counter', 'torch.Size', '_codecs.encode')


def copied_by(func: Kind, args: Kind) -> int:
    """How many items (characters for ``_codecs.encode``) a call copies from its first argument: a
    memoized list, dict, tuple or string copied again by each call of a few bytes (1 MB of text
    encoded a thousand times: a gigabyte)."""
    if func.kind != 'global' or func.value not in COPYING_CALLS or args.kind != 'tuple' or not args.items:
        return 0
    first = args.items[0]
    if first.kind == 'str':
        return len(first.value)
    return first.length  # (a tuple's items from its start, a list's and dictionary's as they are added)


class StorageRecords:
    """The storages a pickle names (torch's persistent ids): each in the form torch.save writes, no
    two keys naming one record (torch finds records case-insensitively but caches storages by
    key), all together no larger than the file (torch allocates each before reading its record)."""

    def __init__(self, file_size: int):
        self.file_size, self.keys, self.nbytes = file_size, {}, 0

    def add(self, saved_id: Kind) -> Kind:
        items = saved_id.items
        kinds = tuple(item.kind for item in items)
        if kinds != ('str', 'global', 'str', 'str', 'int') or items[0].value != 'storage' or items[4].value < 0:
            raise Refused(f'a persistent id of the form {kinds or saved_id.describe()} (torch.save writes '
                          '(\'storage\', storage type, key, location, size))')
        if items[3].value.lower().startswith('meta'):  # torch caches no meta storage: each reference re-reads
            raise Refused(f'a storage at the location {items[3].value!r} (no data)')
        element_size = storage_element_sizes().get(items[1].value)
        if element_size is None:
            raise Refused(f'a storage of type {items[1].value}')
        key, nbytes = items[2].value, items[4].value * element_size
        known = self.keys.get(key.lower())
        if known is None:
            storage = Kind('storage', (nbytes, element_size))
            self.keys[key.lower()] = key, storage
            self.nbytes += nbytes
            if self.nbytes > self.file_size:
                raise Refused(f'storages of {self.nbytes} bytes, in a {self.file_size}-byte file')
            return storage
        if known[0] != key:
            raise Refused(f'the storage keys {known[0]!r} and {key!r}, which name one record (torch reads records '
                          'case-insensitively)')
        return known[1]  # torch reuses the storage loaded first for a key, whatever size and type are named again


@functools.lru_cache(maxsize=None)
def storage_element_sizes() -> dict:
    """Storage type name -> its element's size in bytes, for the storage types torch's allow-list holds."""
    import torch
    from torch import _weights_only_unpickler
    sizes = {}
    for name, value in _weights_only_unpickler._get_allowed_globals().items():
        if value is torch.UntypedStorage:
            sizes[name] = 1
        elif isinstance(value, torch.serialization.StorageType):  # what the unpickler gives for torch.FloatStorage, ...
            sizes[name] = torch._utils._element_size(value.dtype)
    return sizes


@functools.lru_cache(maxsize=None)
def dtype_sizes() -> dict:
    """torch dtype name (as pickled) -> its element's size in bytes."""
    import torch
    return {f'torch.{name}': value.itemsize for name, value in vars(torch).items() if isinstance(value, torch.dtype)}


MAX_DIMS = 64  # numpy's limit; torch has none (a 10**5-dimension tensor crashes tolist())
METADATA_POSITION = {'torch._utils._rebuild_tensor_v2': 6, 'torch._utils._rebuild_tensor_v3': 7}


def check_tensor_view(func: str, arguments) -> None:
    """A rebuilt tensor views only bytes its storage holds, checked before unpickling: torch's
    ``set_`` grows a resizable storage to fit (storages moved to a GPU by ``map_location`` are
    resizable), so a 4-byte storage would become gigabytes before any walk saw the tensor."""
    if func in ('torch._utils._rebuild_parameter', 'torch._utils._rebuild_parameter_with_state'):
        return  # wraps a tensor rebuilt (and checked) before
    if len(arguments) < 4 or arguments[0].kind != 'storage':
        raise Refused(f'{func} without a storage, offset, size and strides (torch.save writes them)')
    storage, offset, size, stride = arguments[:4]
    if len(arguments) > METADATA_POSITION.get(func, len(arguments)) and arguments[METADATA_POSITION[func]] is not NONE:
        # torch converts it for each tensor (a shared dict of 10**5 keys: 2 min per MB); torch.save writes it only
        # for a negation or conjugation bit, which a state_dict's tensors never carry
        raise Refused(f'tensor metadata given to {func} (negation / conjugation bits: a state_dict\'s tensors have none)')
    if func == 'torch._utils._rebuild_tensor_v3':
        dtype = arguments[6] if len(arguments) > 6 else NONE
        element_size = dtype_sizes().get(dtype.value) if dtype.kind == 'global' else None
    else:
        element_size = storage.value[1]
    if element_size is None:
        raise Refused(f'{func} without a dtype (torch.save writes one)')
    if (size.kind, stride.kind) != ('tuple', 'tuple') or len(size.items) != len(stride.items) or not all(
            n.kind == 'int' and n.value >= 0 for n in (offset, *size.items, *stride.items)):
        raise Refused(f'{func} with a shape and strides not written as non-negative numbers')
    if len(size.items) > MAX_DIMS:
        raise Refused(f'a tensor of {len(size.items)} dimensions (at most {MAX_DIMS})')
    sizes, strides = [n.value for n in size.items], [n.value for n in stride.items]
    span = 0 if 0 in sizes else offset.value + sum((n - 1) * s for n, s in zip(sizes, strides)) + 1
    if span * element_size > storage.value[0]:
        raise Refused(f'a tensor of shape {short_tuple(sizes)} and strides {short_tuple(strides)} at offset '
                      f'{offset.value} viewing {span * element_size} bytes of a {storage.value[0]}-byte storage')


def short_tuple(values) -> str:
    return str(tuple(values[:8]))[:-1] + (', ...)' if len(values) > 8 else ')')


DICT_TYPES = ('collections.OrderedDict', 'collections.Counter')
BUILD_TARGETS = ('dict', 'placeholder', 'history buffer')
PLACEHOLDERS = ('numpy.dtype', 'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct')
HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
MAX_HISTORY_BUFFERS = 10_000  # each is built with numpy arrays: ~30 us and ~1 kB
MAX_TENSORS = 100_000  # a large model's Runner checkpoint (weights and two optimizer states) holds some 10**4
# each tensor torch.save writes has a zip record of its own (a local header and a directory entry: some 100
# bytes beside its data) or is a view written in some 40 bytes of pickle; 16 bytes made a tensor of 600
MIN_TENSORS, BYTES_PER_TENSOR = 10_000, 100
# what torch.save, numpy and mmengine call in a checkpoint (REDUCE), and create (NEWOBJ)
TENSOR_REBUILDERS = {f'torch._utils.{name}' for name in (
    '_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter',
    '_rebuild_parameter_with_state')}  # not quantized ones: torch allocates their size; not sparse ones (below)
SPARSE_REBUILDER = 'torch._utils._rebuild_sparse_tensor'
CALLABLES = TENSOR_REBUILDERS | {
    'torch._tensor._rebuild_from_type_v2', 'torch.Size', 'torch.device', 'torch.serialization._get_layout',
    'collections.OrderedDict', 'collections.Counter', 'builtins.set', 'builtins.complex', 'builtins.bytes',
    '_codecs.encode', 'numpy.dtype', 'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct',
    'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar', 'builtins.getattr', HISTORY_BUFFER}
# not Parameter: torch.save writes it with _rebuild_parameter; made by NEWOBJ (from nothing, with a resizable
# storage) and given BUILD state, it is set_ to any size: gigabytes of uninitialised memory from a small file
NEWOBJ_CLASSES = {'collections.OrderedDict', 'collections.Counter', HISTORY_BUFFER}
TENSOR_TYPES = ('torch.Tensor', 'torch.nn.parameter.Parameter')


def reduce_kind(func: Kind, args: Kind) -> Kind:
    """The kind of ``func(*args)``, refusing the calls of allowed names that data never makes."""
    if args.kind != 'tuple':  # (pickle calls func(*args): a list would pass unchecked items)
        raise Refused(f'a call with arguments of kind {args.describe()} (pickle writes them as a tuple)')
    arguments = args.items
    if any(kind.kind == 'global' and kind.value == SPARSE_REBUILDER for kind in (func, *arguments[:1])):
        raise Refused('a sparse tensor: no model or Runner checkpoint holds one, and what it costs is not bounded by '
                      'the file (torch validates its indices after a weights_only load only from 2.14, '
                      'pytorch/pytorch#184750; nothing bounds its number of entries or dense size)')
    if func.kind != 'global' or func.value not in CALLABLES:
        raise Refused(f'calling a {func.describe()} (REDUCE)')
    if func.value == 'collections.OrderedDict':
        if arguments:
            raise Refused('OrderedDict built from arguments (a checkpoint fills it item by item)')
        return Kind('dict', func.value)
    if func.value == 'collections.Counter':
        if not (len(arguments) <= 1 and all(a.kind == 'dict' for a in arguments)):
            raise Refused('Counter built from something other than a dictionary')
        return filled_from(arguments[0], 'dict', func.value) if arguments else Kind('dict', func.value)
    if func.value == 'builtins.set':
        if not (len(arguments) == 1 and arguments[0].kind == 'list' and arguments[0].safe_items):
            raise Refused('a set of something other than strings and small ints')
        return filled_from(arguments[0], 'set')
    if func.value == '_codecs.encode':
        if not (len(arguments) == 2 and arguments[0].kind == 'str' and arguments[1].value in ('latin1', 'latin-1')):
            raise Refused(f'_codecs.encode to {arguments[1].describe() if len(arguments) == 2 else "?"} '
                          '(bytes are written as latin-1)')
        return Kind('bytes')
    if func.value == 'builtins.complex':
        if not (1 <= len(arguments) <= 2 and all(a.kind in ('int', 'float') for a in arguments)):
            raise Refused('complex built from something other than numbers (a string is parsed at each call)')
        return Kind('object')
    if func.value == 'builtins.bytes':
        if arguments:
            raise Refused('bytes built from arguments (only the empty bytes are pickled so)')
        return Kind('bytes')
    if func.value == 'torch._tensor._rebuild_from_type_v2':
        if not (len(arguments) == 4 and arguments[0].kind == 'global' and arguments[0].value in TENSOR_REBUILDERS
                and arguments[1].kind == 'global' and arguments[1].value in TENSOR_TYPES):
            raise Refused('_rebuild_from_type_v2 around something other than a tensor rebuilder')
        reduce_kind(arguments[0], arguments[2])  # the inner call, checked as if made directly
    if func.value in TENSOR_REBUILDERS:
        check_tensor_view(func.value, arguments)
    if func.value in STATEFUL_REBUILDERS and len(arguments) == 4 and not is_empty_state(arguments[3]):
        # torch sets it with setattr: C-level setters (_post_accumulate_grad_hooks, grad, data) keep
        # what they are given out of the tensor's __dict__, hidden from the walk after loading
        raise Refused(f'state set on a tensor by {func.value} ({arguments[3].describe()}): a state_dict\'s tensors '
                      'have none')
    if func.value in TENSOR_REBUILDERS or func.value == 'torch._tensor._rebuild_from_type_v2':
        return Kind('tensor')
    if func.value == HISTORY_BUFFER:
        return Kind('history buffer')
    if func.value in PLACEHOLDERS:  # numpy dtypes and arrays take their data by BUILD (checked by our rebuilders)
        return Kind('placeholder')
    return Kind('object')


STATEFUL_REBUILDERS = ('torch._tensor._rebuild_from_type_v2', 'torch._utils._rebuild_parameter_with_state')


def is_plain_dict(state: Kind) -> bool:
    """A dictionary the pickle made as such (not an OrderedDict or a Counter, whose own attributes
    could carry what its items do not show)."""
    return state.kind == 'dict' and state.value is None


def is_empty_state(state: Kind) -> bool:
    """None, or a plain dictionary with nothing added to it (an empty dictionary is one level deep)."""
    return state.kind == 'none' or (is_plain_dict(state) and state.depth == 1)
