"""Per-epoch metrics as TensorBoard scalars, beside metrics.jsonl (``--tensorboard``).

metrics.jsonl stays the record reports read; the event files are a view of the same numbers
for people who watch runs in TensorBoard: every numeric entry of an epoch's record under its
own name, and each mapping (per-layer densities) as one scalar per key, e.g.
``layer_density/fc1.weight``, with the epoch as the step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError

FOLDER = "tensorboard"


def require_tensorboard() -> type:
    """torch's SummaryWriter; a user error naming the package when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "--tensorboard needs the tensorboard package: pip install "
            "'sparsemomentum[tensorboard]' (or leave the option out)."
        ) from None
    return SummaryWriter


class TensorBoardLog:
    def __init__(self, run_path: Path, first_epoch: int) -> None:
        # purge_step: on resume, drop the events of epochs after the checkpoint, as
        # metrics.jsonl drops their lines
        self.writer = require_tensorboard()(str(run_path / FOLDER), purge_step=first_epoch)

    def write(self, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        for key, value in record.items():
            if isinstance(value, dict):
                for name, entry in value.items():
                    self._scalar(f"{key}/{name}", entry, epoch)
            elif key != "epoch":
                self._scalar(key, value, epoch)
        self.writer.flush()

    def _scalar(self, tag: str, value: Any, epoch: int) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.writer.add_scalar(tag, value, epoch)

    def close(self) -> None:
        self.writer.close()
