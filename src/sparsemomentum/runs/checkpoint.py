"""Checkpoints that survive a kill at any moment.

A checkpoint is written to a temporary file in the run folder, flushed to disk, and only
then renamed over ``checkpoint.pt``; the previous good one is kept as
``checkpoint-previous.pt`` until the new one is in place. A run killed with SIGKILL at any
instant therefore leaves at least one complete checkpoint. Loading uses
``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_file
from ..errors import UserError

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint-previous.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    current = run_dir / CHECKPOINT
    try:
        with atomic_file(current) as out:
            torch.save(state, out)
            if current.exists():  # the new one is complete: keep the old one until it replaces it
                os.replace(current, run_dir / PREVIOUS)
    except OSError as error:
        raise UserError(
            f"cannot write a checkpoint into {run_dir} ({error.strerror}); free disk space or make the folder writable, "
            "then resume with --resume."
        ) from None


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The newest readable checkpoint of ``run_dir`` (the previous one if the newest is damaged)."""
    candidates = [run_dir / CHECKPOINT, run_dir / PREVIOUS]
    problems = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged file: fall back to the previous checkpoint
            problems.append(f"{path.name}: {type(error).__name__}")
    if problems:
        raise UserError(
            f"the checkpoints in {run_dir} are unreadable ({'; '.join(problems)}); start the run again."
        )
    raise UserError(
        f"{run_dir} holds no checkpoint to resume from; start a new run without --resume."
    )
