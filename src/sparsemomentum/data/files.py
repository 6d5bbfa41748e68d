"""Finding, downloading and verifying data files.

Every file is checked against its published md5 before it is read, so a truncated
download or a corrupt copy is reported as such instead of failing later inside a parser.
Downloads land in a temporary file that is renamed only once its checksum is right, so an
interrupted download never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_file
from ..errors import UserError

DATA_DIR_VARIABLE = "SPARSEMOMENTUM_DATA"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$SPARSEMOMENTUM_DATA``, else
    ``~/.cache/sparsemomentum/data``; refused if it names a file."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
    elif os.environ.get(DATA_DIR_VARIABLE):
        root = Path(os.environ[DATA_DIR_VARIABLE]).expanduser()
    else:
        root = Path.home() / ".cache" / "sparsemomentum" / "data"
    if root.exists() and not root.is_dir():
        raise UserError(
            f"the data folder {root} is a file; pass the folder that holds mnist/, "
            "fashion-mnist/, cifar10/, ... (--data-dir or $SPARSEMOMENTUM_DATA)."
        )
    return root


def _algorithm(checksum: str) -> str:
    """The hash a published checksum is written in: md5 (32 hex digits) or sha256 (64)."""
    return "sha256" if len(checksum) == 64 else "md5"


def digest_of(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_file(
    folder: Path, filename: str, checksum: str, mirrors: Sequence[str], download: bool, dataset: str
) -> Path:
    """Path of ``folder/filename`` with the published checksum (md5 or sha256), downloading it
    first if it is missing."""
    path = folder / filename
    if not path.exists():
        if not download:
            raise UserError(
                f"{dataset} file {filename} is missing from {folder}; put the original file there "
                f"(from {mirrors[0]}{filename}) or allow downloading."
            )
        _download(path, checksum, mirrors, dataset)
    algorithm = _algorithm(checksum)
    try:
        actual = digest_of(path, algorithm)
    except OSError as error:
        raise UserError(
            f"cannot read {path} ({error.strerror}); make it readable or point --data-dir "
            "elsewhere."
        ) from None
    if actual != checksum:
        raise UserError(
            f"{dataset} file {path} is corrupt or truncated ({algorithm} {actual}, expected "
            f"{checksum}); "
            "delete it so that it is downloaded again, or replace it with the original file."
        )
    return path


def _download(path: Path, checksum: str, mirrors: Sequence[str], dataset: str) -> None:
    failures = []
    for mirror in mirrors:
        url = mirror + path.name
        try:
            with atomic_file(path) as out, urllib.request.urlopen(url, timeout=30) as response:
                digest = hashlib.new(_algorithm(checksum))
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
                if digest.hexdigest() != checksum:
                    raise _WrongChecksum
            return
        except _WrongChecksum:
            failures.append(f"{url}: wrong {_algorithm(checksum)}")
        except OSError as error:  # URLError, timeouts, refused connections, an unwritable folder
            failures.append(f"{url}: {getattr(error, 'reason', None) or error.strerror or error}")
    raise UserError(
        f"{dataset} file {path.name} is missing from {path.parent} and could not be downloaded "
        f"({'; '.join(failures)}); download it by hand from {mirrors[0]}{path.name} into "
        f"{path.parent}, or point --data-dir / ${DATA_DIR_VARIABLE} at a folder that holds it."
    )


class _WrongChecksum(Exception):
    """A mirror served a file with another checksum: try the next mirror."""
