"""Every checkpoint source mmengine's ``CheckpointLoader`` knows, read as data.

mmengine 0.10.x loads ``http(s)://``, ``torchvision://`` / ``modelzoo://``, ``open-mmlab://`` /
``openmmlab://``, ``mmcls://``, ``pavi://`` and ``s3://`` / ``petrel://`` checkpoints with
``torch.hub.load_state_dict_from_url`` or ``torch.load`` and their default unpickling, which for
URLs is full unpickling (``weights_only=False``). The loaders here resolve the same names with
mmengine's own tables, download into the same torch hub cache *without unpickling*, and hand the
bytes to :func:`ghost_backbones.checkpoint.load_checkpoint_bytes`. :func:`register` puts them in
place of mmengine's (``ghost_backbones.compat`` does that on import).

Each function is named ``load_from_<backend>``: mmengine logs ``Loads checkpoint by <backend>
backend`` from the name.
"""
import logging
import os
import os.path as osp
from tempfile import TemporaryDirectory
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log

from .checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint_bytes, load_checkpoint_file,
                         read_checkpoint)


TIMEOUT_ENV = 'GHOST_BACKBONES_DOWNLOAD_TIMEOUT_S'
DOWNLOAD_TIMEOUT_S = 60  # per blocking read: a server that stops answering is an error, not a hang
MAX_DOWNLOAD_ENV = 'GHOST_BACKBONES_MAX_DOWNLOAD_BYTES'
MAX_DOWNLOAD_BYTES = 8 << 30  # without a Content-Length, a download stops being a checkpoint here


def download(url: str, destination: str, progress: bool = False) -> None:
    """``url`` into ``destination``: streamed into a temporary file beside it, at most the advertised
    length (or ``GHOST_BACKBONES_MAX_DOWNLOAD_BYTES``, 8 GiB by default, when none is advertised),
    checked against the advertised length, and only then renamed into place, so that an
    interrupted, endless or truncated download never becomes the cached file. A server silent for
    ``GHOST_BACKBONES_DOWNLOAD_TIMEOUT_S`` (60) seconds is an error."""
    import tempfile
    import urllib.request
    limit = int(os.environ.get(MAX_DOWNLOAD_ENV, MAX_DOWNLOAD_BYTES))
    timeout = float(os.environ.get(TIMEOUT_ENV, DOWNLOAD_TIMEOUT_S))
    request = urllib.request.Request(url, headers={'User-Agent': 'torch.hub'})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        advertised = response.headers.get('Content-Length')
        expected = int(advertised) if advertised is not None else None
        if expected is not None and expected > limit:
            raise CheckpointError(f'{url} advertises {expected} bytes, more than {MAX_DOWNLOAD_ENV}={limit}')
        with tempfile.NamedTemporaryFile(dir=osp.dirname(destination), prefix=f'.{osp.basename(destination)}.',
                                         delete=False) as tmp:
            try:
                received = copy_at_most(response, tmp, limit if expected is None else expected)
                if expected is not None and received != expected:
                    raise CheckpointError(f'download of {url} ended after {received} of {expected} bytes; '
                                          'nothing was cached')
                if expected is None and response.read(1):
                    raise CheckpointError(f'download of {url} goes on past {MAX_DOWNLOAD_ENV}={limit} bytes; '
                                          'nothing was cached')
            except BaseException:
                tmp.close()
                os.unlink(tmp.name)
                raise
    os.replace(tmp.name, destination)


def copy_at_most(source, target, limit: int, chunk: int = 1 << 20) -> int:
    """Copy up to ``limit`` bytes; the count copied."""
    copied = 0
    while copied < limit:
        data = source.read(min(chunk, limit - copied))
        if not data:
            break
        target.write(data)
        copied += len(data)
    return copied


def download_to_hub_cache(url: str, model_dir: str = None, progress: bool = False, again: bool = False) -> str:
    """The file torch's ``load_state_dict_from_url`` would use (``<hub dir>/checkpoints/<name>``),
    downloaded if absent (or ``again``); nothing is unpickled."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if again or not osp.exists(cached):
        print_log(f'Downloading {url} to {cached}', logger='current')
        download(url, cached, progress)
    return cached


def load_from_local(filename, map_location=None):
    from . import hub_weights  # a hub name (owner/repo, no such path) or a safetensors file: issue 23
    if osp.exists(osp.expanduser(filename)) and not osp.isfile(osp.expanduser(filename)):
        return load_checkpoint_file(filename, map_location)  # a FIFO or device: refused before anything opens it
    if hub_weights.handles(filename):
        return hub_weights.load_local_or_hub(filename, map_location)
    return load_checkpoint_file(filename, map_location)


def load_from_hf_hub(filename, map_location=None):
    """``hf-hub:owner/repo[@revision]`` (timm's spelling): the Hugging Face cache first, downloaded once if absent;
    ``model.safetensors`` read without pickle, else ``pytorch_model.bin`` as data (see :mod:`.hub_weights`)."""
    from .hub_weights import load_hub_weights
    return load_hub_weights(filename, map_location)


def load_from_http(filename, map_location=None, model_dir=None, progress=False):
    """Download once per machine (rank 0 first, as mmengine does), then read as data. A cached file
    that is not a readable checkpoint (e.g. truncated by an older downloader) is fetched once more."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        cached = download_to_hub_cache(filename, model_dir, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached = download_to_hub_cache(filename, model_dir, progress)
    name = f'{filename} (downloaded to {cached})'
    try:
        return load_checkpoint_bytes(read_checkpoint(cached), name, map_location)
    except UnsafeCheckpointError:
        raise
    except CheckpointError:
        if world_size > 1:
            raise
        print_log(f'{cached} is not a readable checkpoint: fetching {filename} again', logger='current',
                  level=logging.WARNING)
        cached = download_to_hub_cache(filename, model_dir, progress, again=True)
        return load_checkpoint_bytes(read_checkpoint(cached), name, map_location)


def load_from_torchvision(filename, map_location=None):
    from mmengine.runner.checkpoint import get_torchvision_models
    prefix = 'modelzoo://' if filename.startswith('modelzoo://') else 'torchvision://'
    if prefix == 'modelzoo://':
        print_log('The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" instead',
                  logger='current', level=logging.WARNING)
    return load_from_http(get_torchvision_models()[filename[len(prefix):]], map_location=map_location)


def load_from_openmmlab(filename, map_location=None):
    from mmengine.runner.checkpoint import _get_mmengine_home, get_deprecated_model_names, get_external_models
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') else 'openmmlab://'
    model_name = filename[len(prefix):]
    deprecated = get_deprecated_model_names()
    if model_name in deprecated:
        print_log(f'{prefix}{model_name} is deprecated in favor of {prefix}{deprecated[model_name]}',
                  logger='current', level=logging.WARNING)
        model_name = deprecated[model_name]
    model_url = get_external_models()[model_name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http(model_url, map_location=map_location)
    return load_checkpoint_file(osp.join(_get_mmengine_home(), model_url), map_location)


def load_from_mmcls(filename, map_location=None):
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    checkpoint = load_from_http(get_mmcls_models()[filename[len('mmcls://'):]], map_location=map_location)
    return _process_mmcls_checkpoint(checkpoint)


def load_from_pavi(filename, map_location=None):
    if not filename.startswith('pavi://'):
        raise ValueError(f'Expected filename startswith `pavi://`, but get {filename}')
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from None
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return load_checkpoint_file(downloaded, map_location)


def load_from_ceph(filename, map_location=None, backend='petrel'):
    from mmengine.fileio import get_file_backend
    data = get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    return load_checkpoint_bytes(data, filename, map_location)


# mmengine 0.10.7's prefixes (regular expressions, longest first) and our loader for each
SCHEMES = {
    '': load_from_local,
    ('http://', 'https://'): load_from_http,
    'pavi://': load_from_pavi,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): load_from_ceph,
    ('modelzoo://', 'torchvision://'): load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_openmmlab,
    'mmcls://': load_from_mmcls,
    'hf-hub:': load_from_hf_hub,  # not one of mmengine's: Hugging Face hub names, as timm writes them
}


def register() -> None:
    """Put these loaders in place of mmengine's, for every prefix mmengine knows, and in the
    ``mmengine.runner.checkpoint`` namespace (for code that calls them by name)."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefixes, loader in SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes=prefixes, loader=loader, force=True)
        setattr(mmengine_checkpoint, loader.__name__, loader)
    unknown = set(CheckpointLoader._schemes.values()) - set(SCHEMES.values())
    if unknown:
        print_log(f'checkpoint loaders not made data-only (registered by other code): '
                  f'{sorted(loader.__name__ for loader in unknown)}', logger='current', level=logging.WARNING)
