"""Weights named on the Hugging Face hub (``timm/ghostnet_100.in1k``, ``hf-hub:timm/...``) and safetensors files.

timm publishes its GhostNet ImageNet weights as ``model.safetensors`` in hub repositories ``timm/<model>.<tag>``.
A hub name resolves through ``huggingface_hub``'s own cache (``HF_HOME`` / ``HF_HUB_CACHE``): a cached file is used
without any network call (``HF_HUB_OFFLINE=1`` works), an absent one is downloaded once with ``hf_hub_download``.
``model.safetensors`` is preferred and read with ``safetensors`` (a JSON header and raw tensor bytes: no pickle at
all); ``pytorch_model.bin`` is read by the data-only loader (:mod:`ghost_backbones.checkpoint`), so a hostile pickle
is refused as any local file would be.

Which names are hub names (:func:`hub_name`): ``hf-hub:<owner>/<repo>[@<revision>]`` always (timm's spelling); a bare
``<owner>/<repo>[@<revision>]`` only when no file or folder of that path exists and it does not end with a checkpoint
extension (``.pth``, ``.bin``, ``.safetensors``, ...): ``checkpoints/ghostnet_100.pth`` stays a (missing) local file.

``huggingface_hub`` and ``safetensors`` are imported inside the functions: the core imports torch and mmengine only.
"""
import logging
import os.path as osp
import re
import struct
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log

from .checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint_file
from .checkpoint_errors import Refused
from .checkpoint_walk import finalize

HUB_PREFIX = 'hf-hub:'
# What a hub repository holds, in order of preference: safetensors first (no pickle).
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
CHECKPOINT_EXTENSIONS = ('.pth', '.pt', '.bin', '.safetensors', '.ckpt', '.pkl', '.pickle', '.tar', '.zip', '.npz',
                         '.h5', '.onnx')
# huggingface_hub's repo id rule (owner/name, letters, digits, '-', '_', '.'), and timm's '@revision'
HUB_NAME = re.compile(r'(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(@(?P<revision>[\w./-]+))?')
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
# what is read: some 60,000 tensors (a GhostNet has ~500, a shard of a large model a few thousand); a 12 MB
# header of 200,000 empty tensors took 285 MB and 3 s to read
READ_MAX_HEADER = 4 * 1024 * 1024


class HubWeightsError(CheckpointError):
    """Weights named by a hub id that cannot be had here (offline and not cached, unknown repository, ...)."""


def hub_name(name) -> Optional[str]:
    """``owner/repo[@revision]`` if ``name`` names hub weights (see the module docstring), else None."""
    if not isinstance(name, str):
        return None
    if name.startswith(HUB_PREFIX):
        bare = name[len(HUB_PREFIX):]
        if not HUB_NAME.fullmatch(bare):
            raise not_a_hub_name(name)
        return bare
    if (HUB_NAME.fullmatch(name) and not osp.exists(name) and not osp.exists(osp.expanduser(name))
            and not name.split('@')[0].lower().endswith(CHECKPOINT_EXTENSIONS)):
        return name
    return None


def split_revision(name: str) -> Tuple[str, Optional[str]]:
    """``('timm/ghostnet_100.in1k', None)`` from ``timm/ghostnet_100.in1k``; the revision after ``@`` if any."""
    match = HUB_NAME.fullmatch(name[len(HUB_PREFIX):] if name.startswith(HUB_PREFIX) else name)
    if not match:
        raise not_a_hub_name(name)
    return match['repo'], match['revision']


def not_a_hub_name(name: str) -> HubWeightsError:
    return HubWeightsError(f'{name!r} is not a hub name: expected [{HUB_PREFIX}]<owner>/<repo>[@<revision>], '
                           f'e.g. {HUB_PREFIX}timm/ghostnet_100.in1k')


def repo_cache_path(repo_id: str) -> str:
    """The folder huggingface_hub keeps this model repository in (``<HF_HUB_CACHE>/models--owner--repo``)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name
    return osp.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=repo_id, repo_type='model'))


def cached_weights_file(repo_id: str, revision: Optional[str] = None) -> Optional[str]:
    """The cached ``model.safetensors`` (else ``pytorch_model.bin``) of this revision, with no network call."""
    from huggingface_hub import try_to_load_from_cache
    for filename in WEIGHT_FILES:
        path = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(path, str):  # None: not cached; _CACHED_NO_EXIST: known absent on the hub
            return path
    return None


def download_weights_file(repo_id: str, revision: Optional[str] = None) -> str:
    """``model.safetensors`` (else ``pytorch_model.bin``) through ``hf_hub_download`` into the hub cache."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    name = repo_id + (f'@{revision}' if revision else '')
    for filename in WEIGHT_FILES:
        try:
            path = hf_hub_download(repo_id, filename, revision=revision)
            print_log(f'{name}: {filename} in the hub cache at {path}', logger='current')
            return path
        except LocalEntryNotFoundError as error:  # offline (HF_HUB_OFFLINE=1) or the hub unreachable
            offline = 'HF_HUB_OFFLINE=1 is set' if constants.is_offline_mode() else 'the hub could not be reached'
            raise HubWeightsError(
                f'weights {name} are not in the Hugging Face cache ({repo_cache_path(repo_id)}) and {offline} '
                f'({type(error).__name__}). Either run once with network access (they are downloaded into that cache '
                f'and used offline afterwards), or do without them: init_cfg=None trains from scratch, or give a '
                f'local file (init_cfg=dict(type=\'Pretrained\', checkpoint=\'path/to/model.safetensors\')).'
            ) from None
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise HubWeightsError(f'{name}: {type(error).__name__} on the Hugging Face hub '
                                  f'({str(error).splitlines()[0]})') from None
        except EntryNotFoundError:
            continue
    raise HubWeightsError(f'hub repository {name} has none of {", ".join(WEIGHT_FILES)}')


def resolve_hub_weights(name: str) -> str:
    """The local file of hub weights: from the cache when there, else downloaded once (rank 0 first when
    distributed, the others then find it in the cache)."""
    repo_id, revision = split_revision(name)
    cached = cached_weights_file(repo_id, revision)
    if cached:
        return cached
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        path = download_weights_file(repo_id, revision)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = cached_weights_file(repo_id, revision) or download_weights_file(repo_id, revision)
    return path


def is_safetensors_file(path: str) -> bool:
    """Whether ``path`` is a safetensors file: 8 bytes of header length, then its JSON header. (A torch zip
    checkpoint starts with ``PK``, a pickle with ``0x80``: neither reads as a plausible header length.)"""
    try:
        with open(osp.expanduser(path), 'rb') as f:
            head = f.read(9)
            size = osp.getsize(osp.expanduser(path))
    except (OSError, TypeError):
        return False
    if len(head) < 9:
        return False
    header_length = struct.unpack('<Q', head[:8])[0]
    return head[8:9] == b'{' and 2 <= header_length <= min(size - 8, SAFETENSORS_MAX_HEADER)


def read_safetensors(path: str, map_location=None) -> Dict[str, torch.Tensor]:
    """A safetensors file's tensors (no pickle). ``map_location``: a device (str / torch.device); any other
    value (a dict or a function, as torch.load takes) loads to the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    device = str(map_location) if isinstance(map_location, (str, torch.device)) else 'cpu'
    with open(osp.expanduser(path), 'rb') as f:
        header_length = struct.unpack('<Q', f.read(8))[0]
    if header_length > READ_MAX_HEADER:
        raise CheckpointError(f'{path} has a safetensors header of {header_length} bytes (read up to '
                              f'{READ_MAX_HEADER}: some 60,000 tensors)')
    try:
        tensors = load_file(osp.expanduser(path), device=device)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f'{path} is not a readable safetensors file: {error}') from None
    try:  # the checks every loaded tensor gets (bools of 0 and 1, bounded dimensions and empty rows, ...)
        return finalize(tensors, file_size=osp.getsize(osp.expanduser(path)))
    except Refused as refused:
        raise UnsafeCheckpointError(f'refused to load {path}: it holds {refused}, which is not plain weights') from None


def load_weights_file(path: str, map_location=None):
    """A local weights file: safetensors (recognised from its content) or a checkpoint read as data."""
    if is_safetensors_file(path):
        return read_safetensors(path, map_location)
    if str(path).lower().endswith('.safetensors'):
        if not osp.exists(osp.expanduser(path)):
            raise FileNotFoundError(f'checkpoint file {path} can not be found.')
        raise CheckpointError(f'{path} is named .safetensors but is not a safetensors file (no valid header)')
    return load_checkpoint_file(path, map_location)


def load_hub_weights(name: str, map_location=None):
    """Hub weights by name (``timm/ghostnet_100.in1k``, ``hf-hub:timm/...@revision``), read as data."""
    path = resolve_hub_weights(name)
    print_log(f'loading {name} from {path}', logger='current', level=logging.INFO)
    return load_weights_file(path, map_location)


def handles(filename) -> bool:
    """Whether a plain (local) checkpoint name is one for this module: a hub name, or a safetensors file (by
    content, or an existing file named ``.safetensors``, which then gets a safetensors error)."""
    if hub_name(filename) is not None:
        return True
    return isinstance(filename, str) and (is_safetensors_file(filename) or (
        filename.lower().endswith('.safetensors') and osp.exists(osp.expanduser(filename))))


def load_local_or_hub(filename: str, map_location=None):
    """What ``load_from_local`` does with a hub name (``owner/repo``, no such path) or a safetensors file."""
    if hub_name(filename) is not None:
        return load_hub_weights(filename, map_location)
    return load_weights_file(filename, map_location)
