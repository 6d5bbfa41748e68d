"""Where a sweep puts each run: ``<root>/<model>/<dataset>/<arm>/d<density>/s<seed>/``.

A path that says what a run is lets a report name the run's row (its *arm*: a method or a
sweep variant) from the folder alone, and keeps two runs of a grid from sharing a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Settings that cannot change a run's numbers: where it writes, where its data is, how it runs.
NOT_RESULT_SETTINGS = (
    "out", "overwrite", "resume", "data_dir", "download", "threads", "device", "tensorboard"
)  # fmt: skip


def density_folder(density: float) -> str:
    return f"d{density:g}"


def run_path(root: Path, arm: str, model: str, dataset: str, density: float, seed: int) -> Path:
    """The folder of one run of ``arm``: readable by what it is, unique within a sweep."""
    return root / model / dataset / arm / density_folder(density) / f"s{seed}"


def arm_from_path(run_dir: Path, config: dict[str, Any]) -> str | None:
    """The method or variant name of a run folder laid out by a sweep (None for other folders)."""
    density_matches = run_dir.parent.name == density_folder(config["density"])
    if run_dir.name == f"s{config['seed']}" and density_matches:
        return run_dir.parent.parent.name
    return None
