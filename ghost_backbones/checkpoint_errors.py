"""The errors of checkpoint loading, shared by the loader, its scan, its rebuilders and trust."""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that asks for more than data (code, memory it could corrupt, or resources far
    beyond its size)."""


class Refused(Exception):
    """Raised while scanning or unpickling; the loader turns it into an UnsafeCheckpointError
    naming the file."""
