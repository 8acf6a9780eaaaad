"""Which checkpoints may be fully unpickled (which can run code): only content the user trusted.

Trust is by content. An entry is the sha256 of a file (64 hex digits, ``sha256:`` optional) or an
absolute path, which is pinned to the sha256 of the bytes it holds when the entry is first
evaluated: other bytes later at that path, or any other file, are not trusted. Entries come from
``GHOST_BACKBONES_TRUSTED_CHECKPOINTS`` (``os.pathsep``-separated) or from
:class:`trusted_checkpoints` in code, whose trust holds only for loads called from within its
block: a generator or task suspended inside the block does not lend it to its caller.
"""
import contextvars
import functools
import hashlib
import logging
import os
import os.path as osp
import re
import stat
import sys
from typing import NamedTuple, Optional, Tuple

from .checkpoint_errors import CheckpointError

TRUSTED_ENV = 'GHOST_BACKBONES_TRUSTED_CHECKPOINTS'
SHA256 = re.compile(r'(?:sha256:)?([0-9a-fA-F]{64})')


class TrustEntry(NamedTuple):
    """Trusted content, and the path it was read from (None for a digest given as such)."""
    sha256: str
    path: Optional[str] = None


def read_regular_file(path: str) -> bytes:
    """A file's bytes through one open descriptor; FIFOs, devices and directories are refused
    before anything is read (opened non-blocking, so that a FIFO cannot hang the reader)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CheckpointError(f'checkpoint {path} is not a regular file')
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))
    except FileNotFoundError:
        raise FileNotFoundError(f'checkpoint file {path} can not be found.') from None
    with os.fdopen(fd, 'rb') as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped between stat and open
            raise CheckpointError(f'checkpoint {path} is not a regular file')
        return f.read()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pin(entry: str, source: str) -> Optional[TrustEntry]:
    """A trust entry as content: a digest as given, a path as the digest of what it holds now
    (None, with a warning, when nothing can be read there: it trusts nothing)."""
    entry = entry.strip()
    digest = SHA256.fullmatch(entry)
    if digest:
        return TrustEntry(digest.group(1).lower())
    if not osp.isabs(entry):
        raise CheckpointError(f'trusted checkpoint {entry!r} ({source}) is not an absolute path: give an absolute '
                              'path or the sha256 of the file (sha256sum FILE)')
    try:
        data = read_regular_file(entry)
    except (OSError, CheckpointError) as error:
        from mmengine.logging import print_log
        print_log(f'trusted checkpoint {entry!r} ({source}) cannot be read, so it trusts nothing: {error}',
                  logger='current', level=logging.WARNING)
        return None
    return TrustEntry(sha256_of(data), osp.realpath(entry))


def split_entries(value: str):
    """``os.pathsep``-separated entries, keeping ``sha256:HEX`` whole."""
    parts = [part.strip() for part in value.split(os.pathsep)]
    entries = []
    for part in parts:
        if entries and entries[-1] == 'sha256' and os.pathsep == ':':
            entries[-1] = f'sha256:{part}'
        elif part:
            entries.append(part)
    return entries


@functools.lru_cache(maxsize=8)
def environment_trust(value: str) -> Tuple[TrustEntry, ...]:
    """The entries of ``GHOST_BACKBONES_TRUSTED_CHECKPOINTS``, pinned once per process and value."""
    return tuple(entry for entry in (pin(part, TRUSTED_ENV) for part in split_entries(value)) if entry)


# (frame that entered the block, its entries), for every block entered in this context
_blocks: contextvars.ContextVar = contextvars.ContextVar('ghost_backbones_trusted_blocks', default=())


class trusted_checkpoints:
    """``with trusted_checkpoints(path_or_sha256, ...):`` the given content (paths pinned now) may be
    fully unpickled by loads called from within the block. Only for files you trust: unpickling
    can run code."""

    def __init__(self, *entries: str):
        self.entries = tuple(e for e in (pin(entry, 'trusted_checkpoints()') for entry in entries) if e)
        self.frame = None

    def __enter__(self):
        self.frame = sys._getframe(1)
        _blocks.set(_blocks.get() + ((self.frame, self.entries),))
        return self

    def __exit__(self, *exc_info):
        _blocks.set(tuple(block for block in _blocks.get() if block[0] is not self.frame))
        self.frame = None


def active_block_entries() -> Tuple[TrustEntry, ...]:
    """Entries of the blocks whose frame is on the current call stack."""
    blocks = _blocks.get()
    if not blocks:
        return ()
    on_stack, frame = set(), sys._getframe(1)
    while frame is not None:
        on_stack.add(id(frame))
        frame = frame.f_back
    return tuple(entry for block_frame, entries in blocks if id(block_frame) in on_stack for entry in entries)


def trust_entries() -> Tuple[TrustEntry, ...]:
    return active_block_entries() + environment_trust(os.environ.get(TRUSTED_ENV, ''))


def trusted_by(data: bytes, name: str) -> Tuple[Optional[TrustEntry], str]:
    """The entry that trusts these exact bytes (or None), and, when a path entry names this file
    with other content, a sentence saying so."""
    entries = trust_entries()
    if not entries:
        return None, ''
    digest = sha256_of(data)
    for entry in entries:
        if entry.sha256 == digest:
            return entry, ''
    real = osp.realpath(name)
    for entry in entries:
        if entry.path is not None and entry.path == real:
            return None, (f' {entry.path} was trusted with content sha256 {entry.sha256}; it now holds sha256 '
                          f'{digest}, which is not trusted.')
    return None, ''
