"""Finding, downloading and verifying data files.

Every file is checked against its published md5 before it is read, so a truncated
download or a corrupt copy is reported as such instead of failing later inside a parser.
Downloads land in a temporary file that is renamed only once its checksum is right, so an
interrupted download never leaves a half-written file behind.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Sequence

from ..errors import UserError

DATA_DIR_VARIABLE = "SPARSEMOMENTUM_DATA"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$SPARSEMOMENTUM_DATA``, else ``~/.cache/sparsemomentum/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_VARIABLE):
        return Path(os.environ[DATA_DIR_VARIABLE]).expanduser()
    return Path.home() / ".cache" / "sparsemomentum" / "data"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_file(
    folder: Path, filename: str, md5: str, mirrors: Sequence[str], download: bool, dataset: str
) -> Path:
    """Path of ``folder/filename`` with a correct md5, downloading it first if it is missing."""
    path = folder / filename
    if not path.exists():
        if not download:
            raise UserError(
                f"{dataset} file {filename} is missing from {folder}; put the original file there "
                f"(from {mirrors[0]}{filename}) or allow downloading."
            )
        _download(path, md5, mirrors, dataset)
    actual = md5_of(path)
    if actual != md5:
        raise UserError(
            f"{dataset} file {path} is corrupt or truncated (md5 {actual}, expected {md5}); "
            "delete it so that it is downloaded again, or replace it with the original file."
        )
    return path


def _download(path: Path, md5: str, mirrors: Sequence[str], dataset: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = mirror + path.name
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
            if md5_of(Path(temporary)) != md5:
                failures.append(f"{url}: wrong md5")
                continue
            os.replace(temporary, path)
            return
        except OSError as error:  # URLError, timeouts and refused connections are all OSErrors
            failures.append(f"{url}: {getattr(error, 'reason', error)}")
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    raise UserError(
        f"{dataset} file {path.name} is missing from {path.parent} and could not be downloaded "
        f"({'; '.join(failures)}); download it by hand from {mirrors[0]}{path.name} into {path.parent}, "
        f"or point --data-dir / ${DATA_DIR_VARIABLE} at a folder that holds it."
    )
