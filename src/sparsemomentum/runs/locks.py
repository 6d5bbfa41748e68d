"""One process per run folder: advisory file locks that the operating system releases when
the holder dies, so a killed sweep never leaves a run locked.

Two sweeps of the same experiment share the work: each run is trained by the process that
locks it first, and the other skips it; results.csv is rewritten by one process at a time.
Locks use ``fcntl.flock`` (Linux, macOS); where it is missing, runs are not locked.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


@contextmanager
def locked(path: Path, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block.

    Yields True while holding it; False at once when another process holds it (unless
    ``wait``, which blocks until the lock is free).
    """
    if fcntl is None:
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)  # closing the descriptor releases the lock
