"""Files that are either complete or absent.

Every file the library writes (JSON, metrics rewrites, checkpoints, exports, downloads,
plots) goes through :func:`atomic_file`: it is written to a temporary file beside its
destination, flushed to disk, and renamed over the destination only when complete. A
killed process or a full disk leaves the old file (or none), never half of a new one. The
file gets the permissions any other new file would (0666 less the umask), not mkstemp's 0600.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a temporary file; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as out:
            os.fchmod(out.fileno(), 0o666 & ~_umask())  # as open() would; mkstemp gives 0600
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
