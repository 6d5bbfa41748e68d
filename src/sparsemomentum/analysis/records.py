"""Runs as a report sees them: the finished ones and those that diverged, found under any
folder, damaged ones skipped with a warning, and labelled so that only runs of one recipe are
averaged.

A run's *recipe* is everything in its config.json that can change its result, except the
seed (what a mean and standard error run over) and the density (a table's columns). Runs
that share a label (their sweep arm, or else their method) but not a recipe, e.g. a 1-epoch
and a 3-epoch run of sparse momentum, are told apart by the settings in which they differ.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from ..data import dataset_classes
from ..errors import UserError
from ..runs import (
    NOT_RESULT_SETTINGS,
    SUMMARY_KEYS,
    RunFolder,
    arm_from_path,
    read_divergence,
    read_metrics,
    read_summary,
)

# Not part of a recipe: the axes a report averages over or lays out, and bookkeeping.
_NOT_RECIPE = {*NOT_RESULT_SETTINGS, "seed", "density", "method", "resolved"}
# A classifier that ignores its input scores a test loss of about ln(classes) on balanced
# classes; within 2 % of that, a run has learned nothing.
UNTRAINED_LOSS_FRACTION = 0.98


@dataclass
class RunRecord:
    path: Path
    label: str
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    # Why the run stopped early (its loss turned NaN or infinite); its summary is then the part
    # of its config.json that places it in a table, and it has no score.
    diverged: str | None = None

    @property
    def dense(self) -> bool:
        return self.summary["method"] == "dense"

    @property
    def density(self) -> float:
        return round(self.summary["density"], 6)

    @property
    def language_model(self) -> bool:
        """Judged by bits per character (lower is better), not by test error."""
        return "test_bpc" in self.summary

    @property
    def score(self) -> float:
        """What the report compares, lower is better: bits per character for language
        models, else the test error in %."""
        return self.summary["test_bpc" if self.language_model else "test_error"]

    @property
    def trained(self) -> bool:
        """False for a classifier that ended where an untrained one starts (test loss within
        2 % of ln(classes)): a start it never left, or a collapse to a constant output; and
        for a run that diverged. One such run at 88 % error would otherwise stand in a mean for
        a method's accuracy, so the report leaves it out of its means and lists it. True where
        the data set's class count is not known."""
        if self.diverged is not None:
            return False
        classes = dataset_classes(self.summary["dataset"])
        if self.language_model or not classes or "test_loss" not in self.summary:
            return True
        return self.summary["test_loss"] < UNTRAINED_LOSS_FRACTION * math.log(classes)

    @property
    def score_name(self) -> str:
        return "test bits per character" if self.language_model else "test error (%)"

    @property
    def curve(self) -> tuple[str, str]:
        """The learning curve's metrics.jsonl key and its axis label."""
        if self.language_model:
            return "validation_bpc", "validation bits per character"
        return "validation_accuracy", "validation accuracy (%)"

    @property
    def recipe(self) -> dict[str, Any]:
        source = self.config or {"epochs": self.summary.get("epochs")}
        return {k: v for k, v in source.items() if k not in _NOT_RECIPE}

    def setting(self, name: str) -> Any:
        """A setting of this run: from config.json, else the summary."""
        return self.config.get(name, self.summary.get(name))

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path) if (self.path / RunFolder.METRICS).exists() else []


def _read_config(run_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((run_dir / RunFolder.CONFIG).read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def find_runs(root: str | os.PathLike, only: Sequence[str] = ()) -> list[RunRecord]:
    """Every finished or diverged run at or below ``root``, labelled by its sweep variant or
    else its method; a run whose files are damaged is skipped with a one-line warning.
    ``only``: ``KEY=VALUE`` selections, as the sweep takes them (several values of one key:
    any)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root} does not exist; pass a run folder or a sweep folder.")
    runs = []
    for summary_file in sorted(root.rglob(RunFolder.SUMMARY)):
        run_dir = summary_file.parent
        try:
            summary = read_summary(run_dir)
        except UserError as error:
            warnings.warn(f"skipping {run_dir}: {error}", stacklevel=2)
            continue
        runs.append(_record(run_dir, summary, _read_config(run_dir)))
    runs += _diverged_runs(root)
    if not runs:
        raise UserError(
            f"no finished runs (summary.json) under {root}; train some with `sparsemomentum "
            "sweep` or `train` first."
        )
    runs = selected(runs, only, root)
    _tell_recipes_apart(runs)
    return runs


def _record(
    run_dir: Path, summary: dict[str, Any], config: dict[str, Any], diverged: str | None = None
) -> RunRecord:
    label = arm_from_path(run_dir, config) if {"seed", "density"} <= set(config) else None
    return RunRecord(run_dir, label or summary["method"], summary, config, diverged)


def _diverged_runs(root: Path) -> list[RunRecord]:
    """The runs that stopped on a NaN or infinite loss (diverged.json, no summary.json),
    placed in their tables by their config.json."""
    runs = []
    for marker in sorted(root.rglob(RunFolder.DIVERGED)):
        run_dir = marker.parent
        if (run_dir / RunFolder.SUMMARY).exists():
            continue  # trained again since, and finished
        config = _read_config(run_dir)
        placed = {key: config.get(key) for key in SUMMARY_KEYS if key != "test_error"}
        if None in placed.values():
            warnings.warn(f"skipping {run_dir}: it diverged, and its config.json is damaged",
                          stacklevel=3)  # fmt: skip
            continue
        reason = read_divergence(run_dir) or "diverged"  # or gone since the search
        runs.append(_record(run_dir, placed, config, reason))
    return runs


def selected(runs: list[RunRecord], only: Sequence[str], root: Path) -> list[RunRecord]:
    """The runs whose settings match every key of ``only`` (``model=mlp-300x4``, ...)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for selection in only:
        key, separator, value = selection.partition("=")
        if not separator or not key or not value:
            raise UserError(
                f"--only takes KEY=VALUE, e.g. --only model=mlp-300x2; got {selection!r}."
            )
        wanted[key].add(value)
    kept = [
        run
        for run in runs
        if all(any(_matches(run, key, value) for value in values) for key, values in wanted.items())
    ]
    if not kept:
        asked = " ".join(f"--only {selection}" for selection in only)
        raise UserError(f"no finished run under {root} matches {asked}; check the key and value.")
    return kept


def _matches(run: RunRecord, key: str, text: str) -> bool:
    value = run.label if key == "variant" else run.setting(key)
    if isinstance(value, bool):
        return str(value).lower() == text.lower()
    if isinstance(value, (int, float)):
        try:
            return float(text) == value
        except ValueError:
            return False
    return str(value) == text


def _tell_recipes_apart(runs: list[RunRecord]) -> None:
    """Append the differing settings to the labels of runs that share a label, not a recipe.

    A setting that some runs' config.json lacks cannot tell them apart: those runs come from
    an older version, before the setting existed, and ran what is now its default (so one
    grid trained over several commits stays one table). 0 and 0.0 are the same value."""
    by_label: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_label[run.summary["model"], run.summary["dataset"], run.label].append(run)
    for members in by_label.values():
        recipes = [run.recipe for run in members]
        shared = sorted(set.intersection(*(set(recipe) for recipe in recipes)))
        varying = [k for k in shared if len({_comparable(r[k]) for r in recipes}) > 1]
        if not varying:
            continue
        for run, recipe in zip(members, recipes):
            settings = ", ".join(f"{key}={recipe[key]}" for key in varying)
            run.label = f"{run.label} ({settings})"


def _comparable(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)
