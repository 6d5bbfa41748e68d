"""The run folder: config.json, metrics.jsonl, summary.json, checkpoints and plots; a run
whose loss turned NaN or infinite leaves diverged.json instead of summary.json.

JSON files are written to a temporary file and renamed, so a killed run never leaves a
half-written config or summary; metrics.jsonl is appended one complete line per epoch, and a
line cut short by a kill is skipped when it is read.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..atomic import atomic_file
from ..errors import UserError
from .checkpoint import CHECKPOINT, PREVIOUS
from .tensorboard import TensorBoardLog, require_tensorboard

# What a report needs from a summary.json.
SUMMARY_KEYS = ("model", "dataset", "method", "density", "seed", "epochs", "test_error")


def write_atomically(path: Path, text: str) -> None:
    with atomic_file(path, "w") as out:
        out.write(text)


class RunFolder:
    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    DIVERGED = "diverged.json"
    PLOTS = ("density.png", "curves.png")
    FILES = (CONFIG, METRICS, SUMMARY, DIVERGED, CHECKPOINT, PREVIOUS, *PLOTS)

    def __init__(
        self,
        path: str | os.PathLike,
        overwrite: bool = False,
        resume: bool = False,
        tensorboard: bool = False,
    ) -> None:
        self.path = Path(path)
        self.tensorboard = tensorboard
        self._tensorboard_log: TensorBoardLog | None = None  # opened at the first record
        self._created = resume  # a resumed run's folder is there already
        if tensorboard:
            require_tensorboard()  # refused before anything is written
        if resume:
            if not (self.path / self.CONFIG).exists():
                raise UserError(
                    f"{self.path} is not a run folder (no config.json); pass the --out folder of "
                    "an earlier run."
                )
            return
        if self.path.exists() and not self.path.is_dir():
            raise UserError(
                f"the output path {self.path} is a file; choose a folder name for --out."
            )
        # Checked now, done at the first write: a run that fails while it loads its data or
        # builds its model leaves no empty folder and, with --overwrite, the old run intact.
        self._replace = self.path.is_dir() and any(self.path.iterdir())
        if self._replace:
            self._check_overwrite(overwrite)

    def _create(self) -> None:
        if self._created:
            return
        if self._replace:
            shutil.rmtree(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(
                f"cannot create the run folder {self.path} ({error.strerror}); choose a writable "
                "--out."
            ) from None
        self._created = True

    def _check_overwrite(self, overwrite: bool) -> None:
        if not overwrite:
            raise UserError(
                f"the run folder {self.path} already exists; choose another --out or pass "
                "--overwrite."
            )
        if not any(
            (self.path / name).exists() for name in (self.CONFIG, self.METRICS, self.SUMMARY)
        ):
            raise UserError(
                f"{self.path} is not empty and is not a run folder (no config.json or "
                "metrics.jsonl), so --overwrite will not delete it; choose another --out."
            )

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        self._create()
        try:
            write_atomically(self.path / name, text)
        except OSError as error:
            raise UserError(
                f"cannot write {name} into {self.path} ({error.strerror}); free disk space or "
                "make it writable."
            ) from None

    def write_summary(self, summary: dict[str, Any]) -> None:
        """The run has finished: an earlier attempt's divergence no longer describes it."""
        self.write_json(self.SUMMARY, summary)
        (self.path / self.DIVERGED).unlink(missing_ok=True)

    def write_divergence(self, reason: str, epoch: int) -> None:
        """Keep why the run stopped, so that a report lists it instead of losing it: a sweep
        prints the reason once, while the folder, with no summary.json, outlives the console."""
        self.write_json(self.DIVERGED, {"reason": reason, "epoch": epoch})

    def append_metrics(self, record: dict[str, Any]) -> None:
        self._create()
        try:
            with open(self.path / self.METRICS, "a") as out:
                out.write(json.dumps(record, sort_keys=True) + "\n")
            if self.tensorboard and self._tensorboard_log is None:
                self._tensorboard_log = TensorBoardLog(self.path, first_epoch=record["epoch"])
            if self._tensorboard_log is not None:
                self._tensorboard_log.write(record)
        except OSError as error:
            raise UserError(
                f"cannot write metrics into {self.path} ({error.strerror}); free disk space or "
                "make it writable."
            ) from None

    def close(self) -> None:
        """Flush and close what stays open between epochs (the TensorBoard writer)."""
        if self._tensorboard_log is not None:
            self._tensorboard_log.close()
            self._tensorboard_log = None

    def keep_metrics_before(self, epoch: int) -> None:
        """On resume: drop the lines of epochs the checkpoint does not include."""
        if (self.path / self.METRICS).exists():
            kept = [record for record in read_metrics(self.path) if record["epoch"] < epoch]
            lines = "".join(json.dumps(record, sort_keys=True) + "\n" for record in kept)
            write_atomically(self.path / self.METRICS, lines)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete per-epoch records of a run (a line cut short by a kill is left out)."""
    records = []
    with open(Path(path) / RunFolder.METRICS) as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                records.append(record)
    return records


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A finished run's summary.json; a UserError naming the problem if it is damaged."""
    file = Path(path) / RunFolder.SUMMARY
    try:
        summary = json.loads(file.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} has no summary.json: the run has not finished.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{file} is damaged (not JSON).") from None
    missing = [key for key in SUMMARY_KEYS if not isinstance(summary, dict) or key not in summary]
    if missing:
        raise UserError(f"{file} is damaged (no {missing[0]!r}).")
    return summary


def read_divergence(path: str | os.PathLike) -> str | None:
    """Why a run diverged (its diverged.json), or None if it did not; a damaged file still
    says that it diverged."""
    file = Path(path) / RunFolder.DIVERGED
    if not file.exists():
        return None
    try:
        reason = json.loads(file.read_text())["reason"]
    except (OSError, ValueError, TypeError, KeyError):
        return "diverged (diverged.json is damaged)"
    return str(reason)


def is_run_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of the files of a run folder (which no other output may replace)."""
    path = Path(path).resolve()
    return path.name in RunFolder.FILES and (path.parent / RunFolder.CONFIG).exists()
