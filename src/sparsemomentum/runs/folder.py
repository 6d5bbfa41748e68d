"""The run folder: config.json, metrics.jsonl, summary.json and plots.

JSON files are written to a temporary file and renamed, so a killed run never leaves a
half-written config or summary; metrics.jsonl is appended one complete line per epoch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..atomic import atomic_file
from ..errors import UserError


def write_atomically(path: Path, text: str) -> None:
    with atomic_file(path, "w") as out:
        out.write(text)


class RunFolder:
    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"

    def __init__(
        self, path: str | os.PathLike, overwrite: bool = False, resume: bool = False
    ) -> None:
        self.path = Path(path)
        if resume:
            if not (self.path / self.CONFIG).exists():
                raise UserError(
                    f"{self.path} is not a run folder (no config.json); pass the --out folder of an earlier run."
                )
            return
        if self.path.exists() and not self.path.is_dir():
            raise UserError(
                f"the output path {self.path} is a file; choose a folder name for --out."
            )
        if self.path.is_dir() and any(self.path.iterdir()):
            if not overwrite:
                raise UserError(
                    f"the run folder {self.path} already exists; choose another --out or pass --overwrite."
                )
            if not any(
                (self.path / name).exists() for name in (self.CONFIG, self.METRICS, self.SUMMARY)
            ):
                raise UserError(
                    f"{self.path} is not empty and is not a run folder (no config.json or metrics.jsonl), "
                    "so --overwrite will not delete it; choose another --out."
                )
            shutil.rmtree(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(
                f"cannot create the run folder {self.path} ({error.strerror}); choose a writable --out."
            ) from None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        try:
            write_atomically(
                self.path / name, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
            )
        except OSError as error:
            raise UserError(
                f"cannot write {name} into {self.path} ({error.strerror}); free disk space or make it writable."
            ) from None

    def append_metrics(self, record: dict[str, Any]) -> None:
        try:
            with open(self.path / self.METRICS, "a") as out:
                out.write(json.dumps(record, sort_keys=True) + "\n")
        except OSError as error:
            raise UserError(
                f"cannot write metrics into {self.path} ({error.strerror}); free disk space or make it writable."
            ) from None

    def keep_metrics_before(self, epoch: int) -> None:
        """On resume: drop the lines of epochs the checkpoint does not include."""
        path = self.path / self.METRICS
        if path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["epoch"] < epoch
            ]
            write_atomically(path, "".join(line + "\n" for line in kept))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(Path(path) / RunFolder.METRICS) as handle:
        return [json.loads(line) for line in handle if line.strip()]
