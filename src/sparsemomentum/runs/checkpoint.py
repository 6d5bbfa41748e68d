"""Checkpoints that survive a kill at any moment, and that prove they are intact.

A checkpoint is written to a temporary file in the run folder, flushed to disk, and only
then renamed over ``checkpoint.pt``; the previous good one is kept as
``checkpoint-previous.pt`` until the new one is in place. A run killed with SIGKILL at any
instant therefore leaves at least one complete checkpoint.

``torch.load`` does not check the zip file's CRCs, so a flipped byte inside a tensor loads
silently. Each checkpoint therefore carries a SHA-256 digest of its content (every key,
number and tensor byte), recomputed on loading; a checkpoint whose digest does not match is
treated as damaged and the previous one is used. Loading uses ``weights_only=True``: a
checkpoint is data, never code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_file
from ..errors import UserError

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint-previous.pt"
FORMAT = "sparsemomentum-checkpoint-2"


def content_digest(value: Any) -> str:
    """SHA-256 of a nested structure of dicts, lists, tensors and plain values."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        digest.update(f"{type(value).__name__} {value!r}".encode())


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    current = run_dir / CHECKPOINT
    for path in (current, run_dir / PREVIOUS):
        if path.is_dir():
            raise UserError(
                f"{path} is a folder, not a checkpoint file; move it away, then resume with "
                "--resume."
            )
    payload = {"format": FORMAT, "sha256": content_digest(state), "state": state}
    try:
        with atomic_file(current) as out:
            torch.save(payload, out)
            if current.exists():  # the new one is complete: keep the old one until it replaces it
                os.replace(current, run_dir / PREVIOUS)
    except OSError as error:
        raise UserError(
            f"cannot write a checkpoint into {run_dir} ({error.strerror}); free disk space or "
            "make the folder writable, then resume with --resume."
        ) from None


def _read(path: Path) -> dict[str, Any]:
    """The state in checkpoint ``path``; ValueError when the file is not an intact checkpoint."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError("not a checkpoint of this version")
    if content_digest(payload["state"]) != payload["sha256"]:
        raise ValueError("its content does not match its digest")
    return payload["state"]


def load_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The newest intact checkpoint of ``run_dir`` (the previous one if the newest is damaged)."""
    run_dir = Path(run_dir)
    problems = []
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if not path.exists():
            continue
        try:
            return _read(path)
        except Exception as error:  # a damaged file: fall back to the previous checkpoint
            problems.append(f"{path.name}: {error or type(error).__name__}")
    if problems:
        raise UserError(
            f"the checkpoints in {run_dir} are damaged ({'; '.join(problems)}); start the run "
            "again."
        )
    raise NoCheckpoint(
        f"{run_dir} has no checkpoint yet (the run stopped before its first one was written); "
        f"start it again with --out {run_dir} --overwrite."
    )


class NoCheckpoint(UserError):
    """A run folder without any checkpoint."""
