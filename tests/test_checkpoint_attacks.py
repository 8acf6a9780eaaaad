"""Checkpoints are read as data, tried as an attacker would: each hostile file is built here,
loaded in a separate process (a crash shows as its exit code), refused with
UnsafeCheckpointError / CheckpointError naming the file and the refused thing, and nothing runs,
nothing is written, no class changes, no memory or CPU is spent beyond a small bound."""
import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from hostile_checkpoints import (Reduce, arrays_sharing_bytes, bools_of_bytes, build_on, bytearray_bomb,
                                 bytes_as_dtype, case_twin_archive, colliding_dict, colliding_set,
                                 colliding_set_via_rebuild, deep_tuple_in_a_set, deflate_bomb, doubling_tuples,
                                 expanded_tensor, forged_array, forged_dtype, forged_scalar, function_as_value,
                                 getattr_history_buffer, getattr_os_system, glob, history_buffers,
                                 history_buffers_sharing_a_list, items_shadowed, legacy_module_checkpoint,
                                 legacy_tensor_constructor, list_arguments, list_holding_itself,
                                 ndarray_escaping_its_placeholder, parameter_by_newobj, quantized_without_quantizer,
                                 reduce_on_a_string, runs, safetensors_of_empty_tensors, sparse_of_stride_zero,
                                 tensor_dict_swapped, parameter_state_inside_rebuild, records_sharing_bytes,
                                 storage_keys_differing_in_case, view_beyond_storage, build_pairs_on_an_ordered_dict,
                                 build_on_a_storage, int_persistent_id, complex_of_a_huge_int, tensor_of_many_dims,
                                 safetensors_file, storage_named_again_larger, meta_storage_references,
                                 key_decoded_as_torch_decodes, calls_of_memoized_arguments,
                                 persistent_id_referenced_again, tensor_rebuild_of_two_arguments,
                                 build_state_reused, encode_of_a_reused_string, set_of_a_reused_list, metadata_shared,
                                 PROTO, STOP, EMPTY_DICT, MARK, TUPLE1, REDUCE, SETITEM,
                                 sparse_out_of_range, state_dict_with_attribute, tensor_set_by_build, text,
                                 two_central_directories, with_metadata, with_pickle, with_state, zip64_second_directory,
                                 lists_nested_while_empty, counter_of_a_reused_counter, empty_sets)

# Loads each path given through mmengine's CheckpointLoader (the plugin's loaders), then checks that
# the process-wide state an attack would change is intact and reports its own CPU time and memory.
LOADER = r'''
import collections, copy, gc, json, resource, sys, time
import torch
import ghost_backbones
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from ghost_backbones.checkpoint import CheckpointError
HistoryBuffer()  # registers mmengine's statistics methods in the class-wide table
layout_name = torch.serialization._get_layout.__name__
outcome, cost = {}, {}
for path in sys.argv[1:]:
    rss, cpu = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()
    try:
        loaded = CheckpointLoader.load_checkpoint(path, map_location='cpu')
        for value in loaded.values():
            if torch.is_tensor(value) and value.layout != torch.strided:
                value.to_dense()
        copy.deepcopy(loaded)
        outcome[path] = 'loaded'
    except CheckpointError as error:
        outcome[path] = f'{type(error).__name__}: {error}'
    gc.collect()
    cost[path] = dict(cpu_s=time.process_time() - cpu,
                      rss_growth_mb=(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024)
outcome['classes intact'] = (
    copy.deepcopy(torch.ones(2)).shape == (2,) and collections.Counter('aab').most_common() == [('a', 2), ('b', 1)]
    and torch.serialization._get_layout.__name__ == layout_name and not hasattr(torch.Tensor, 'hostile')
    and all(HistoryBuffer._statistics_methods.get(n) is getattr(HistoryBuffer, n) for n in ('min', 'max', 'mean')))
print(json.dumps(dict(outcome=outcome, cost=cost)))
'''


def load_in_subprocess(paths, cwd=None, env=None, timeout=120):
    result = subprocess.run([sys.executable, '-c', LOADER, *map(str, paths)], capture_output=True, text=True,
                            cwd=cwd, env=dict(os.environ, **(env or {})), timeout=timeout)
    assert result.returncode == 0, f'the loading process died ({result.returncode}): {result.stderr[-2000:]}'
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report['outcome'], report['cost']


def assert_refused(outcome, path, *things):
    message = outcome[str(path)]
    assert message.startswith(('UnsafeCheckpointError: ', 'CheckpointError: ')), (path, message)
    assert str(path) in message, message
    for thing in things:
        assert thing in message, (thing, message)


def hostile_files(tmp_path, marker):
    """name -> (path, what the refusal names): one of each way the old loader was broken, and more."""
    files = {}

    def saved(name, obj, thing):
        files[name] = (tmp_path / f'{name}.pth', thing)
        torch.save(obj, str(files[name][0]))

    def raw(name, payload, thing):
        files[name] = (with_pickle(tmp_path / f'{name}.pth', payload), thing)

    # code
    saved('os_system', {'meta': runs(f'touch {marker}')}, 'the global posix.system')
    raw('getattr_os_system', getattr_os_system(f'touch {marker}'), 'the global builtins.__import__')
    raw('getattr_other', getattr_history_buffer('__setstate__'), "getattr('HistoryBufferState', '__setstate__')")
    # memory corruption: object / void dtypes, flags, sparse tensors out of range
    saved('object_array', {'a': forged_array(np.dtype('O'), b'\x41' * 16)}, "numpy dtype 'O8'")
    saved('void_array', {'a': forged_array(forged_dtype('V8', (3, '|', None, None, None, 8, 1, 0x3F)), b'\0' * 16)},
          "'V8'")
    saved('float_with_flags', {'d': forged_dtype('f8', (3, '<', None, None, None, -1, -1, 63))}, 'dtype state')
    files['sparse_coo'] = (sparse_out_of_range(tmp_path / 'sparse_coo.pth', 'coo'), 'a sparse tensor')
    files['sparse_csr'] = (sparse_out_of_range(tmp_path / 'sparse_csr.pth', 'csr'), 'a sparse tensor')
    files['sparse_stride0'] = (sparse_of_stride_zero(tmp_path / 'sparse_stride0.pth'), 'a sparse tensor')
    # tensors hidden from the walk of the loaded object: as a tensor's attribute, a Parameter's grad or
    # post-accumulate hooks (a C-level setter: not in its __dict__), a state_dict's attribute (its
    # deepcopy, as mmengine's EMAHook makes, would allocate 4 GB)
    wide = torch.ones(1).expand(10 ** 9)
    saved('tensor_attribute', {'w': with_state(torch.ones(2), {'hidden': wide})}, 'state set on a tensor')
    saved('parameter_grad', {'w': with_state(torch.nn.Parameter(torch.ones(2)), {'grad': torch.ones(2)})},
          'state set on a tensor')
    saved('parameter_hooks', {'w': with_state(torch.nn.Parameter(torch.ones(2)),
                                              {'_post_accumulate_grad_hooks': {'h': wide}})}, 'state set on a tensor')
    saved('state_dict_attribute', {'state_dict': state_dict_with_attribute('hidden', wide)},
          "a dictionary carrying the attributes ['_metadata', 'hidden']")
    saved('state_dict_metadata', {'state_dict': state_dict_with_attribute('_metadata', {'x': wide})},
          "the state_dict _metadata entry 'x'")
    saved('quantized_plain', {'state_dict': {'w': quantized_without_quantizer()}}, 'quantized dtype torch.quint8')
    # a rebuilt tensor re-pointed by BUILD (Tensor.set_) at a size its storage lacks, or at a stride-0 view
    saved('build_set_bigger', {'w': tensor_set_by_build((10 ** 9,), (1,))}, 'state set on a rebuilt tensor (BUILD')
    saved('build_set_stride0', {'w': tensor_set_by_build((10 ** 9,), (0,))}, 'state set on a rebuilt tensor (BUILD')
    # values no writer makes: bools that are not 0 / 1, bits dtypes no kernel reads, a numpy shape whose
    # element count overflows 64 bits to the size of its data (0)
    saved('bool_bytes', {'state_dict': {'mask': bools_of_bytes(0, 1, 2)}}, 'bool tensor of shape (3,) holding the byte 2')
    saved('numpy_bool_bytes', {'a': forged_array(np.dtype('?'), b'\x01\xff')}, 'numpy bool array holding the byte 255')
    saved('numpy_bool_scalar', {'a': forged_scalar(np.dtype('?'), b'\x07')},
          'numpy bool scalar holding the byte 7')
    saved('bits_dtype', {'state_dict': {'w': torch.zeros(4, dtype=torch.uint8).view(torch.bits8)}},
          'the dtype torch.bits8')
    # third review: a Parameter made by NEWOBJ and grown by set_ (4 GB of uninitialised memory), a
    # dictionary's items() shadowed (the walk saw nothing), a call with a list for arguments (checks on
    # them skipped), tuples doubling through the memo (deepcopy for hours), more HistoryBuffers than a
    # MessageHub holds, a negation bit, a dtype no kernel reads, an int beyond 64 bits in a log
    raw('parameter_by_newobj', parameter_by_newobj(), "creating a global 'torch.nn.parameter.Parameter' (NEWOBJ)")
    saved('items_shadowed', items_shadowed({'w': wide}), "a dictionary carrying the attributes ['items']")
    raw('list_arguments', list_arguments(), 'a call with arguments of kind list')
    raw('doubling_tuples', doubling_tuples(), 'counted as a tree')
    raw('list_holding_itself', list_holding_itself(), 'a list that holds itself')
    raw('history_buffers', history_buffers(10_001), 'more than 10000 HistoryBuffers')
    saved('negation_bit', {'state_dict': {'w': with_metadata(torch.ones(2), {'neg': True})}}, 'tensor metadata given to')
    saved('uint4', {'state_dict': {'w': bytes_as_dtype(torch.zeros(8, dtype=torch.uint8), torch.uint4)}},
          'the dtype torch.uint4')
    saved('huge_int_in_a_log', {'message_hub': {'log_scalars': {'loss': Reduce((HistoryBuffer, ([2 ** 2000], [1])))}}},
          'ints beyond 64 bits')
    # fourth review: many arrays / HistoryBuffers over one pickled byte string / list (gigabytes during the load),
    # two zip central directories (zipfile saw the entry stored, torch's reader inflates it), one string
    # referenced 5,000 times (a 500 MB JSON dump), a function as a value
    saved('arrays_sharing_bytes', {'meta': arrays_sharing_bytes()}, 'numpy arrays of 524288 bytes')
    saved('history_buffers_sharing_a_list', {'message_hub': {'log_scalars': history_buffers_sharing_a_list()}},
          'HistoryBuffers of more than 1000000 values')
    files['two_central_directories'] = (two_central_directories(tmp_path / 'two_central_directories.pth'),
                                        'a zip central directory at')
    saved('repeated_string', {'meta': ['x' * 100_000] * 5000}, 'bytes counted as a tree')
    raw('function_as_value', function_as_value(), 'the function')
    # fifth review: a second directory through the zip64 locator, empty arrays / tensors of millions of rows
    # (tolist makes a list per row), lists nested 450 deep past the scan's bound
    files['zip64_second_directory'] = (zip64_second_directory(tmp_path / 'zip64_second_directory.pth'),
                                       'a zip64 locator pointing at')
    saved('empty_rows_array', {'meta': {'x': forged_array(np.dtype('f8'), b'', shape=(5_000_000, 0))}},
          'an empty numpy array of shape (5000000, 0)')
    saved('empty_rows_tensor', {'state_dict': {'w': torch.zeros(5_000_000, 0)}}, 'an empty tensor of shape (5000000, 0)')
    raw('lists_nested_while_empty', lists_nested_while_empty(), 'nested more than 100 deep')
    saved('numpy_shape_overflow', {'a': forged_array(np.dtype('f4'), b'', shape=(2 ** 32, 2 ** 32))},
          'numpy array of shape (4294967296, 4294967296)')
    # classes and functions rewritten for the whole process (BUILD on them)
    size = glob('torch', 'Size')
    raw('build_counter', build_on(glob('collections', 'Counter'), 'most_common', size), "state set on a global")
    raw('build_function', build_on(glob('torch.serialization', '_get_layout'), '__name__', text('evil')),
        'state set on a global')
    raw('build_tensor_class', build_on(glob('torch', 'Tensor'), 'hostile', size), 'state set on a global')
    raw('build_placeholder', build_on(glob('ghost_backbones.checkpoint_rebuild', 'PendingArray'), 'array', size),
        'state set on a global')
    # resources: a few hundred bytes asking for gigabytes, hash collisions
    raw('bytearray_bomb', bytearray_bomb(), 'the global builtins.bytearray')
    raw('colliding_set', colliding_set(), 'a set of something other than strings and small ints')
    raw('colliding_dict', colliding_dict(), 'a dictionary key of kind int')
    files['deflate_bomb'] = (deflate_bomb(tmp_path / 'deflate_bomb.pth'), 'compressed zip entry')
    # found by review: checks skipped through _rebuild_from_type_v2, another data.pkl, calls of results,
    # torch's legacy constructors, a placeholder's class swapped, views larger than their storage
    raw('set_via_rebuild', colliding_set_via_rebuild(), '_rebuild_from_type_v2 around something other')
    raw('deep_tuple_in_a_set', deep_tuple_in_a_set(), 'nested more than 100 deep')
    raw('reduce_on_a_string', reduce_on_a_string(), 'calling a str')
    raw('legacy_tensor_constructor', legacy_tensor_constructor(), "calling a global 'torch.FloatTensor'")
    files['case_twin'] = (case_twin_archive(tmp_path / 'case_twin.pth', bytearray_bomb()), 'differ only in case')
    files['ndarray_escape'] = (ndarray_escaping_its_placeholder(tmp_path / 'ndarray_escape.pth'),
                               "creating a global 'numpy.ndarray' (NEWOBJ)")
    files['expanded'] = (expanded_tensor(tmp_path / 'expanded.pth'), 'viewing 40000000000 bytes of a 4-byte storage')
    files['expanded_quantized'] = (expanded_tensor(tmp_path / 'expanded_quantized.pth', quantized=True),
                                   "calling a global 'torch._utils._rebuild_qtensor'")
    # sixth review: a tensor's __dict__ swapped for an OrderedDict hiding a deepcopy bomb (by a Counter as its
    # state, or by the state inside _rebuild_from_type_v2's arguments), one record read as many storages (listed
    # at one local header, or named by keys differing in case), a view that set_ would grow its storage to (a GPU
    # storage is resizable), colliding pairs given by BUILD, a storage's dtype changed by BUILD, persistent ids
    # and numbers torch trips on, 10**5 dimensions, safetensors with what a pickle may not hold
    files['tensor_dict_swapped'] = (with_pickle(tmp_path / 'tensor_dict_swapped.pth', tensor_dict_swapped(),
                                                {'x': torch.ones(2)}), "(dict 'collections.Counter')")
    saved('parameter_state_inside_rebuild', {'state_dict': {'w': parameter_state_inside_rebuild()}},
          'state set on a tensor by torch._utils._rebuild_parameter_with_state')
    files['records_sharing_bytes'] = (records_sharing_bytes(tmp_path / 'records_sharing_bytes.pth', nbytes=1 << 18),
                                      'sharing bytes (one record read as two)')
    files['keys_differing_in_case'] = (
        storage_keys_differing_in_case(tmp_path / 'keys_differing_in_case.pth', nbytes=1 << 18),
        "the storage keys 'abcdefghijkl' and 'Abcdefghijkl', which name one record")
    saved('view_beyond_storage', {'state_dict': {'w': view_beyond_storage()}},
          'viewing 4000000000 bytes of a 4-byte storage')
    raw('build_pairs_on_an_ordered_dict', build_pairs_on_an_ordered_dict(), 'attributes given to a dictionary as a list')
    raw('build_on_a_storage', build_on_a_storage(), 'state set on a storage')
    raw('int_persistent_id', int_persistent_id(), 'a persistent id of the form int')
    raw('complex_of_a_huge_int', complex_of_a_huge_int(), 'int too large to convert to float')
    saved('tensor_of_many_dims', {'state_dict': {'w': tensor_of_many_dims()}}, 'a tensor of 100000 dimensions')
    saved('bare_storages', {'meta': {'s': torch.ones(2).untyped_storage()}}, 'a storage of 8 bytes outside a tensor')
    for name, header, data, thing in (
            ('st_bool_bytes', {'m': {'dtype': 'BOOL', 'shape': [4], 'data_offsets': [0, 4]}}, bytes([0, 1, 2, 255]),
             'a bool tensor of shape (4,) holding the byte 255'),
            ('st_empty_rows', {'w': {'dtype': 'F32', 'shape': [2 ** 40, 0], 'data_offsets': [0, 0]}}, b'',
             'an empty tensor of shape (1099511627776, 0)'),
            ('st_many_dims', {'w': {'dtype': 'U8', 'shape': [1] * 200, 'data_offsets': [0, 1]}}, b'\0',
             'a tensor of 200 dimensions')):
        files[name] = (safetensors_file(tmp_path / f'{name}.safetensors', header, data), thing)
    # seventh review: records read again for each reference (a meta storage, an empty one), a key the check
    # decoded otherwise than torch, one call's arguments called 100,000 times
    files['meta_storage_references'] = (meta_storage_references(tmp_path / 'meta_storage_references.pth'),
                                        "a storage at the location 'meta'")
    files['key_decoded_as_torch_decodes'] = (key_decoded_as_torch_decodes(tmp_path / 'key_decoded.pth'),
                                             'viewing 4194304 bytes of a 16-byte storage')
    raw('calls_of_memoized_arguments', calls_of_memoized_arguments(), 'the arguments of a call used again')
    files['tensor_rebuild_of_two_arguments'] = (
        with_pickle(tmp_path / 'two_arguments.pth', tensor_rebuild_of_two_arguments(), {'x': torch.ones(1)}),
        'without a storage, offset, size and strides')
    files['persistent_id_referenced_again'] = (
        with_pickle(tmp_path / 'persistent_id_referenced_again.pth', persistent_id_referenced_again(),
                    {'x': torch.zeros(0)}), "a storage's persistent id used again")
    # eighth review: a memoized BUILD state, string or list copied again by each call of a few bytes, one
    # _metadata shared by 2,000 state_dicts (checked once per dictionary), a numpy shape of 65 dimensions
    raw('build_state_reused', build_state_reused(), 'the state given by BUILD used again')
    raw('encode_of_a_reused_string', encode_of_a_reused_string(), 'calls copying')
    raw('set_of_a_reused_list', set_of_a_reused_list(), 'calls copying')
    raw('metadata_shared', metadata_shared(), 'counted as a tree')
    saved('numpy_many_dims', {'a': forged_array(np.dtype('u1'), b'\0', shape=(1,) * 65)}, 'numpy array shape')
    # ninth review: a string parsed by complex() at each call, marks left open (1,000,000 loaded)
    raw('complex_of_a_string', PROTO + EMPTY_DICT + text('x') + glob('builtins', 'complex') + text('1+2j') + TUPLE1
        + REDUCE + SETITEM + STOP, 'complex built from something other than numbers')
    raw('marks_left_open', PROTO + EMPTY_DICT + MARK * 1000 + STOP, 'more than 100 marks open')
    raw('a_mark_left_open', PROTO + EMPTY_DICT + MARK + STOP, '1 marks left open')
    # eleventh review: a memoized Counter copied again by each call (counted as empty), a megabyte of empty sets
    raw('counter_of_a_reused_counter', counter_of_a_reused_counter(), 'calls copying')
    raw('empty_sets', empty_sets(), 'EMPTY_SET')
    return files


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp('hostile')
    marker = folder / 'pwned'
    return folder, marker, hostile_files(folder, marker)


def test_hostile_files_are_refused_and_nothing_runs_changes_or_costs(hostile, tmp_path):
    folder, marker, files = hostile
    paths = [path for path, _ in files.values()]
    outcome, cost = load_in_subprocess(paths)
    for name, (path, thing) in files.items():
        assert_refused(outcome, path, thing)
        # a few hundred kilobytes may not cost seconds of CPU or much more memory than their size
        assert cost[str(path)]['cpu_s'] < 2.0, (name, cost[str(path)])
        assert cost[str(path)]['rss_growth_mb'] < 64, (name, cost[str(path)])
    assert outcome['classes intact']
    assert not marker.exists()
    assert max(os.path.getsize(p) for p in paths) < 600_000  # the attacks are small files


def test_the_attacks_are_real_without_the_bounds():
    """The DoS files do what they claim where nothing bounds them (so the test above means something)."""
    import time
    payload = colliding_set(8000)
    start = time.process_time()
    set(int(x) for x in [k * (2 ** 61 - 1) for k in range(1, 8001)])
    assert time.process_time() - start > 0.05  # quadratic already at 8,000 elements
    assert b'bytearray' in bytearray_bomb() and len(bytearray_bomb()) < 200 and len(payload) < 120_000


def test_the_zip_attack_is_real_for_torch(tmp_path):
    """torch's reader inflates the entry that zipfile sees stored (so the check above means something)."""
    import io
    import zipfile
    for make in (two_central_directories, zip64_second_directory):
        path = make(tmp_path / f'{make.__name__}.pth', inflated_mib=8)
        assert [info.compress_type for info in zipfile.ZipFile(path).infolist()
                if info.filename.endswith('data/0')] == [zipfile.ZIP_STORED]
        reader = torch._C.PyTorchFileReader(io.BytesIO(path.read_bytes()))
        assert len(reader.get_record('data/0')) == 8 << 20 > 10 * path.stat().st_size, make.__name__


def like_a_gpu(storage, location):
    """What ``map_location='cuda'`` does to each storage (torch._utils._to), on the CPU: a resizable copy."""
    copy = torch.UntypedStorage(storage.size())
    copy.copy_(storage)
    return copy


def test_the_sixth_review_attacks_are_real_for_torch(tmp_path):
    """Without the bounds, torch's weights-only load reads one record as many storages, lets set_ grow a
    storage moved to a device, and keeps a tensor's __dict__ swapped for an OrderedDict with attributes."""
    for make in (records_sharing_bytes, storage_keys_differing_in_case):
        path = make(tmp_path / f'{make.__name__}.pth', count=40, nbytes=1 << 16)
        storages = torch.load(str(path), weights_only=True)['meta']
        assert len({s.data_ptr() for s in storages}) == 40 and sum(s.nbytes() for s in storages) > 20 * path.stat().st_size
    torch.save({'w': view_beyond_storage(10 ** 6)}, str(tmp_path / 'grow.pth'))
    grown = torch.load(str(tmp_path / 'grow.pth'), weights_only=True, map_location=like_a_gpu)['w']
    assert grown.untyped_storage().nbytes() == 4 * 10 ** 6 > 100 * (tmp_path / 'grow.pth').stat().st_size
    path = with_pickle(tmp_path / 'swapped.pth', tensor_dict_swapped(depth=3), {'x': torch.ones(2)})
    tensor = torch.load(str(path), weights_only=True)['message_hub']['x']
    assert not dict(vars(tensor)) and type(vars(tensor)) is not dict and 'bomb' in vars(tensor).__dict__


def test_a_view_is_checked_before_any_storage_is_made(tmp_path):
    """A tensor viewing more than its storage is refused before unpickling: the map_location (which on a
    GPU makes resizable storages) is never called; a legitimate file loads through the same map_location."""
    hostile, good = tmp_path / 'grow.pth', tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': view_beyond_storage()}}, str(hostile))
    named_again = with_pickle(tmp_path / 'named_again.pth', storage_named_again_larger(), {'x': torch.ones(1)})
    torch.save({'state_dict': {'w': torch.arange(4.)[1:]}}, str(good))
    script = ('import json, sys, torch, ghost_backbones\n'
              'from ghost_backbones.checkpoint import CheckpointError, load_checkpoint_file\n'
              'calls = []\n'
              'def like_a_gpu(storage, location):\n'
              '    calls.append(location)\n'
              '    copy = torch.UntypedStorage(storage.size())\n'
              '    copy.copy_(storage)\n'
              '    return copy\n'
              'out = {}\n'
              'for path in sys.argv[1:]:\n'
              '    del calls[:]\n'
              '    try:\n'
              '        out[path] = [load_checkpoint_file(path, like_a_gpu)["state_dict"]["w"].tolist(), len(calls)]\n'
              '    except CheckpointError as error:\n'
              '        out[path] = [str(error), len(calls)]\n'
              'print(json.dumps(out))\n')
    result = subprocess.run([sys.executable, '-c', script, str(hostile), str(named_again), str(good)],
                            capture_output=True, text=True, timeout=120)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for path in (hostile, named_again):  # (torch reuses the 4-byte storage loaded first for a key named again)
        assert 'viewing 4000000000 bytes of a 4-byte storage' in out[str(path)][0] and out[str(path)][1] == 0
    assert out[str(good)] == [[1.0, 2.0, 3.0], 1]


def test_a_load_directive_in_metadata_is_dropped_and_the_state_dict_copies(tmp_path):
    """torch leaves ``assign_to_params_buffers`` in a state_dict's _metadata after
    ``load_state_dict(assign=True)``; read back, it would make a plain load_state_dict alias the
    file's tensors (of the file's dtype). It is dropped: the model keeps its own parameters."""
    from ghost_backbones.checkpoint import load_checkpoint_file
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    state = model.state_dict()
    model.load_state_dict(state, assign=True)
    assert state._metadata['0']['assign_to_params_buffers'] is True  # torch wrote it
    shared = torch.ones(2, 2, dtype=torch.float64)
    state['0.weight'] = state['1.weight'] = shared
    torch.save(state, str(tmp_path / 'assign.pth'))
    loaded = load_checkpoint_file(str(tmp_path / 'assign.pth'))
    assert all(set(entry) == {'version'} for entry in loaded._metadata.values())
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    fresh.load_state_dict(loaded)
    assert fresh[0].weight.dtype == torch.float32 and fresh[0].weight.data_ptr() != fresh[1].weight.data_ptr()
    assert torch.equal(fresh[0].weight, torch.ones(2, 2))


def test_a_plain_history_buffer_is_rebuilt_from_numbers_only():
    """The plain MessageHub form (what the plugin writes) read back with the loader's checks."""
    import ghost_backbones  # noqa: F401 (the MessageHub fix)
    from mmengine.logging import MessageHub
    from ghost_backbones.checkpoint import CheckpointError
    from ghost_backbones.compat import HISTORY_BUFFER_TYPE
    hub = MessageHub.get_instance('plain_history_buffer_test')
    good = dict(type=HISTORY_BUFFER_TYPE, log_history=[0.5, 0.25], count_history=[1, 1], max_length=10)
    hub.load_state_dict({'log_scalars': {'loss': good}, 'runtime_info': {}, 'resumed_keys': {}})
    assert hub.get_scalar('loss').mean() == 0.375
    for bad, message in ((dict(good, log_history=[2 ** 1000, 1]), 'ints beyond 64 bits'),
                         (dict(good, max_length=0), 'max_length 0'),
                         (dict(good, log_history=['a', 'b']), 'not numbers')):
        with pytest.raises(CheckpointError, match=f"logged value 'loss' of the MessageHub state: .*{message}"):
            hub.load_state_dict({'log_scalars': {'loss': bad}, 'runtime_info': {}, 'resumed_keys': {}})


def test_a_safetensors_header_beyond_the_bound_is_refused_cheaply(tmp_path):
    import resource
    import time
    from ghost_backbones.checkpoint import CheckpointError
    from ghost_backbones.hub_weights import load_weights_file
    path = safetensors_of_empty_tensors(tmp_path / 'many.safetensors')
    start, rss = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=r'many.safetensors has a safetensors header of \d+ bytes'):
        load_weights_file(str(path))
    assert time.process_time() - start < 0.5
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024 < 32


def test_legacy_format_is_refused_and_writes_nothing(tmp_path):
    path = legacy_module_checkpoint(tmp_path)
    # torch's own legacy loader, unrestricted, writes the patch file: the attack is real
    control = subprocess.run([sys.executable, '-c', 'import torch; torch.load("legacy.pth", weights_only=False)'],
                             cwd=tmp_path, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(tmp_path), GHOST_BACKBONES_STARTUP='0'))
    assert control.returncode == 0 and (tmp_path / 'Victim.patch').exists(), control.stderr[-1000:]
    (tmp_path / 'Victim.patch').unlink()

    outcome, _ = load_in_subprocess([path], cwd=tmp_path, env=dict(PYTHONPATH=str(tmp_path)))
    assert_refused(outcome, path, 'legacy (pre-1.6, non-zip)', 'convert_weights.py --trust --whole')
    assert not list(tmp_path.glob('*.patch'))


def test_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / 'checkpoint.pth'
    os.mkfifo(fifo)
    outcome, _ = load_in_subprocess([fifo], timeout=60)
    assert_refused(outcome, fifo, 'not a regular file')


PATH_TRUST = r'''
import json, os, sys
import ghost_backbones
from ghost_backbones.checkpoint import CheckpointError, load_checkpoint_file
trusted, hostile = sys.argv[1:3]
outcome = {}
def attempt(key, path):
    try:
        outcome[key] = 'loaded ' + type(load_checkpoint_file(path)['meta']).__name__
    except CheckpointError as error:
        outcome[key] = f'{type(error).__name__}: {error}'
attempt('trusted', trusted)                          # pins the trusted path to its content
os.replace(hostile, trusted)                         # the trusted path overwritten
attempt('overwritten', trusted)
print(json.dumps(outcome))
'''


def test_path_trust_is_content_trust(tmp_path):
    import collections
    trusted = tmp_path / 'trusted.pth'
    torch.save({'meta': Reduce((collections.defaultdict, (list,)))}, str(trusted))  # needs trust: not data
    marker = tmp_path / 'pwned'
    hostile = tmp_path / 'hostile.pth'
    torch.save({'meta': runs(f'touch {marker}')}, str(hostile))
    env = dict(os.environ, GHOST_BACKBONES_TRUSTED_CHECKPOINTS=str(trusted))
    result = subprocess.run([sys.executable, '-c', PATH_TRUST, str(trusted), str(hostile)], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome['trusted'] == 'loaded defaultdict'
    assert outcome['overwritten'].startswith('UnsafeCheckpointError') and 'it now holds sha256' in outcome['overwritten']
    assert not marker.exists()

    # the trusted file deleted, a hostile one written elsewhere (on ext4 it often gets the freed inode)
    os.unlink(trusted)
    elsewhere = tmp_path / 'elsewhere.pth'
    torch.save({'meta': runs(f'touch {marker}')}, str(elsewhere))
    outcome, _ = load_in_subprocess([elsewhere], env={'GHOST_BACKBONES_TRUSTED_CHECKPOINTS': str(trusted)})
    assert_refused(outcome, elsewhere, 'posix.system')
    assert not marker.exists()


# ---------------------------------------------------------------------------- every way in

ENTRY_POINTS = r'''
import json, sys
import torch
import ghost_backbones
from ghost_backbones import GhostNet
from ghost_backbones.checkpoint import CheckpointError
from mmengine.runner import Runner
outcome = {}

def runner_load_from(path):
    import torch.nn as nn
    from mmengine.model import BaseModel
    class Net(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)
        def forward(self, *args, **kwargs):
            return self.linear(args[0])
    runner = Runner(model=Net(), work_dir=sys.argv[1], load_from=path, default_scope='mmengine')
    runner.load_or_resume()

for source in sys.argv[2:]:
    for how, load in (('load_from', lambda: runner_load_from(source)),
                      ('init_cfg', lambda: GhostNet(init_cfg=dict(type='Pretrained', checkpoint=source)).init_weights())):
        try:
            load()
            outcome[f'{how} {source}'] = 'loaded'
        except CheckpointError as error:
            outcome[f'{how} {source}'] = f'{type(error).__name__}: {error}'
print(json.dumps(outcome))
'''


def test_every_entry_point_refuses(hostile, tmp_path, file_server):
    """load_from, init_cfg=Pretrained, and both over http://127.0.0.1, for one file of each kind."""
    folder, marker, files = hostile
    root, base = file_server
    chosen = ['os_system', 'sparse_coo', 'build_counter', 'bytearray_bomb', 'deflate_bomb']
    sources = [str(files[name][0]) for name in chosen]
    for name in chosen:
        (root / f'{name}.pth').write_bytes(files[name][0].read_bytes())
        sources.append(f'{base}/{name}.pth')
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'))
    result = subprocess.run([sys.executable, '-c', ENTRY_POINTS, str(tmp_path / 'work'), *sources],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(outcome) == 2 * len(sources)
    for key, message in outcome.items():
        name = key.rsplit('/', 1)[-1][:-len('.pth')]
        assert message.startswith(('UnsafeCheckpointError', 'CheckpointError')), (key, message)
        assert f'{name}.pth' in message and files[name][1] in message, (key, message)
    assert not marker.exists()


def test_tools_refuse(hostile, tmp_path, repo_root):
    """tools/demo.py, tools/convert_weights.py and tools/deploy/export_onnx.py on hostile files."""
    from helpers import DET_CONFIG, tool
    folder, marker, files = hostile
    image = tmp_path / 'image.png'
    from PIL import Image
    Image.new('RGB', (64, 64)).save(image)
    runs_ = {
        'demo': [tool('demo.py'), str(image), DET_CONFIG, str(files['os_system'][0]), '--out', str(tmp_path / 'o.png')],
        'convert': [tool('convert_weights.py'), str(files['bytearray_bomb'][0]), str(tmp_path / 'c.pth')],
        'convert_whole': [tool('convert_weights.py'), '--whole', str(files['build_counter'][0]),
                          str(tmp_path / 'w.pth')],
        'export_onnx': [tool('deploy', 'export_onnx.py'), '--config', DET_CONFIG, '--checkpoint',
                        str(files['object_array'][0]), '--out', str(tmp_path / 'm.onnx')],
    }
    expected = {'demo': 'posix.system', 'convert': 'builtins.bytearray', 'convert_whole': 'state set on a global',
                'export_onnx': "numpy dtype 'O8'"}
    for name, command in runs_.items():
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
        assert result.returncode != 0, (name, result.stdout[-1000:])
        assert 'UnsafeCheckpointError' in result.stderr and expected[name] in result.stderr, (name, result.stderr[-2000:])
        assert 'Segmentation fault' not in result.stderr and result.returncode > 0
    assert not marker.exists() and not (tmp_path / 'c.pth').exists() and not (tmp_path / 'w.pth').exists()


def test_truncated_download_is_not_cached(tmp_path, file_server):
    root, base = file_server
    good = tmp_path / 'good.pth'
    torch.save({'value': torch.arange(3.)}, str(good))
    (root / 'good.pth').write_bytes(good.read_bytes())
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    script = ('import json, sys, ghost_backbones\n'
              'from mmengine.runner.checkpoint import CheckpointLoader\n'
              'from ghost_backbones.checkpoint import CheckpointError\n'
              'try:\n    print(CheckpointLoader.load_checkpoint(sys.argv[1])["value"].tolist())\n'
              'except CheckpointError as error:\n    print("CheckpointError:", error)\n')
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'))
    cut = subprocess.run([sys.executable, '-c', script, f'{base}/truncated/good.pth'], capture_output=True, text=True,
                         env=env, timeout=120)
    assert 'ended after 1000 of 100000 bytes' in cut.stdout, cut.stdout + cut.stderr[-2000:]
    assert not (cache / 'good.pth').exists() and not [p for p in cache.iterdir() if p.is_file()]

    # a truncated file already in the cache (as an older downloader left it) is fetched again
    (cache / 'good.pth').write_bytes(good.read_bytes()[:1000])
    again = subprocess.run([sys.executable, '-c', script, f'{base}/good.pth'], capture_output=True, text=True,
                           env=env, timeout=120)
    assert again.stdout.strip().splitlines()[-1] == '[0.0, 1.0, 2.0]', again.stdout + again.stderr[-2000:]
    assert (cache / 'good.pth').read_bytes() == good.read_bytes()


def test_a_legitimate_file_beside_the_hostile_ones_loads(hostile, tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(4.), 'mask': torch.tensor([True, False]),
                               'f8': torch.ones(3).to(torch.float8_e4m3fn), 'u16': torch.arange(3).to(torch.uint16)},
                'meta': {'epoch': 3, 'seed': np.int64(5), 'flag': np.bool_(True)},
                'array': np.arange(3, dtype=np.float32), 'bools': np.array([True, False])}, str(good))
    folder, marker, files = hostile
    outcome, _ = load_in_subprocess([files['os_system'][0], good, files['bytearray_bomb'][0]])
    assert outcome[str(good)] == 'loaded' and outcome['classes intact']
    assert_refused(outcome, files['os_system'][0], 'posix.system')


def test_sparse_tensors_load_only_from_trusted_files(tmp_path):
    """Sparse tensors are refused as data, valid ones too (their cost is not bounded by the file);
    a file the user trusts still loads them."""
    dense = torch.tensor([[1., 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 5]])
    good = tmp_path / 'sparse_good.pth'
    torch.save({'coo': dense.to_sparse()}, str(good))  # (the loading process deep-copies: not CSR)
    outcome, _ = load_in_subprocess([good])
    assert_refused(outcome, good, 'a sparse tensor', 'pytorch/pytorch#184750')
    outcome, _ = load_in_subprocess([good], env={'GHOST_BACKBONES_TRUSTED_CHECKPOINTS': str(good)})
    assert outcome[str(good)] == 'loaded' and outcome['classes intact']


def test_the_tensor_check_refuses_what_the_scan_already_keeps_out():
    """Behind the scan: an attribute named like a method the check calls (numel) is refused as an
    attribute before it is called; hooks and sparse tensors are refused too."""
    from ghost_backbones.checkpoint_walk import check_tensor, finalize
    from ghost_backbones.checkpoint_errors import Refused
    tensor = torch.ones(1).expand(10 ** 9)
    tensor.numel = lambda: 0
    with pytest.raises(Refused, match=r"attributes \['numel'\]"):
        check_tensor(tensor)
    hooked = torch.nn.Parameter(torch.ones(1))
    hooked.register_post_accumulate_grad_hook(lambda parameter: None)
    with pytest.raises(Refused, match='grad or hooks'):
        check_tensor(hooked)
    with pytest.raises(Refused, match='sparse tensors are not read as data'):
        check_tensor(torch.ones(2, 2).to_sparse())
    swapped = torch.ones(2)
    swapped.__dict__ = collections.OrderedDict()  # (what a Counter as the tensor's state does)
    with pytest.raises(Refused, match='whose __dict__ is a OrderedDict'):
        check_tensor(swapped)
    with pytest.raises(Refused, match='a tensor of 65 dimensions'):
        check_tensor(torch.ones((1,) * 65))
    check_tensor(torch.ones((1,) * 64))
    with pytest.raises(Refused, match='a storage of 8 bytes outside a tensor'):
        finalize({'meta': [torch.ones(2).untyped_storage()]}, file_size=400)
    # storages grown after loading: all of them together may not hold more than the file (shared ones once)
    shared = torch.ones(100)
    assert finalize({'a': shared, 'b': shared[:2], 'c': [shared[50:]]}, file_size=400)['b'].shape == (2,)
    with pytest.raises(Refused, match='storages hold 404 bytes, in a 400-byte file'):
        finalize({'a': shared, 'b': torch.ones(1)}, file_size=400)


def test_the_number_of_objects_is_bounded_before_unpickling(monkeypatch):
    """A list of 10**6 items cost 4 s and 840 MB before the walk counted them: the scan counts what the
    pickle makes."""
    from ghost_backbones import checkpoint_scan
    from ghost_backbones.checkpoint import UnsafeCheckpointError, load_checkpoint_bytes
    from hostile_checkpoints import zip_bytes
    data = zip_bytes({'meta': list(range(20))})
    assert load_checkpoint_bytes(data, 'twenty.pth')['meta'] == list(range(20))
    monkeypatch.setattr(checkpoint_scan, 'MAX_OBJECTS', 20)
    with pytest.raises(UnsafeCheckpointError, match='more than 20 objects'):
        load_checkpoint_bytes(data, 'twenty.pth')


def test_the_number_of_tensors_is_bounded_before_unpickling(monkeypatch):
    """Each tensor rebuild costs some 30 us and 600 bytes; the scan counts them (fresh arguments each)."""
    from ghost_backbones import checkpoint_scan
    from ghost_backbones.checkpoint import UnsafeCheckpointError, load_checkpoint_bytes
    from hostile_checkpoints import zip_bytes
    data = zip_bytes({f'w{i}': torch.ones(1) for i in range(4)})
    assert len(load_checkpoint_bytes(data, 'four.pth')) == 4
    monkeypatch.setattr(checkpoint_scan, 'MAX_TENSORS', 3)  # (also one per 100 bytes)
    with pytest.raises(UnsafeCheckpointError, match='more than 3 tensors'):
        load_checkpoint_bytes(data, 'four.pth')
    monkeypatch.undo()
    storage = torch.arange(10_001.)
    views = zip_bytes([storage[i:i + 1] for i in range(10_001)])  # ~40 bytes each: one per 100 bytes, 10,000 at least
    assert len(views) < 100 * 10_001
    with pytest.raises(UnsafeCheckpointError, match=f'more than 10000 tensors in a {len(views)}-byte file'):
        load_checkpoint_bytes(views, 'views.pth')
    assert len(load_checkpoint_bytes(zip_bytes([storage[i:i + 1] for i in range(10_000)]), 'views.pth')) == 10_000


def test_an_endless_or_silent_download_stops_and_caches_nothing(tmp_path, file_server):
    root, base = file_server
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    script = ('import sys, resource, ghost_backbones\n'
              'from mmengine.runner.checkpoint import CheckpointLoader\n'
              'from ghost_backbones.checkpoint import CheckpointError\n'
              'before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n'
              'for url in sys.argv[1:]:\n'
              '    try:\n        CheckpointLoader.load_checkpoint(url)\n'
              '    except (CheckpointError, OSError) as error:\n        print(type(error).__name__, error)\n'
              'print("RSS_GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n')
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'), GHOST_BACKBONES_MAX_DOWNLOAD_BYTES=str(8 << 20),
               GHOST_BACKBONES_DOWNLOAD_TIMEOUT_S='2')
    result = subprocess.run([sys.executable, '-c', script, f'{base}/endless', f'{base}/silent'], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'goes on past GHOST_BACKBONES_MAX_DOWNLOAD_BYTES=8388608 bytes' in result.stdout, result.stdout
    assert 'timed out' in result.stdout, result.stdout
    assert not [p for p in cache.iterdir()]  # no partial file left, nothing cached
    assert int(result.stdout.split('RSS_GROWTH_MB')[1]) < 256  # the 4 GiB stream was not kept
