"""Grids of training runs from an experiment file: expand, skip what is done, run the rest.

An experiment file (TOML) is the record of what a table or figure is made of:

    [base]                  TrainConfig fields shared by every run
    [grid]                  TrainConfig fields with a list of values; runs are the product
    [[variant]]             a name plus fixed TrainConfig overrides, e.g. an ablation

Each value of ``grid.method`` and each ``[[variant]]`` is one *arm* (a row of the report),
crossed with the other grid axes; a key an arm sets replaces the grid axis of that name, so
``{name = "dense", method = "dense", density = 1.0}`` trains the dense baseline once per seed
instead of once per density. Every run lives in DIR/<model>/<dataset>/<arm>/d<density>/s<seed>/
and is finished when its summary.json exists, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import multiprocessing
import re
import tomllib
import typing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from ..algorithms import method_options
from ..errors import UserError
from ..runs import RunFolder, run_path, write_atomically
from .config import TrainConfig
from .loop import train

Trainer = Callable[[TrainConfig, bool], dict[str, Any]]

TABLES = ("base", "grid", "variant")
# The folder layout names these; any other grid axis is appended to the arm's folder name.
LAYOUT_AXES = ("model", "dataset", "method", "density", "seed")
# Chosen by the sweep for each run, so an experiment file may not set them.
SWEEP_OWNED = ("out", "overwrite")
# Settings that cannot change a run's numbers: a finished run trained with other values still counts.
NOT_RESULTS = ("out", "overwrite", "data_dir", "download", "threads")
# results.csv starts with what identifies a run and what it scored; other columns follow sorted.
LEADING_COLUMNS = (
    "variant",
    "model",
    "dataset",
    "method",
    "density",
    "seed",
    "epochs",
    "test_error",
    "test_accuracy",
)
RESULTS = "results.csv"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def setting_kinds() -> dict[str, type]:
    """Run setting or method option -> the plain type a TOML value must have (``list`` for
    pattern lists); method options come from the methods registered now."""
    kinds = {name: option.kind for name, option in method_options().items()}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        if name == "method_options":
            continue
        if typing.get_origin(hint) is list:
            kinds[name] = list
        else:
            kinds[name] = next(
                t for t in (*typing.get_args(hint), hint) if t in (bool, int, float, str)
            )
    return kinds


@dataclass(frozen=True)
class Run:
    arm: str
    config: TrainConfig

    @property
    def path(self) -> Path:
        return Path(self.config.out)

    @property
    def finished(self) -> bool:
        return (self.path / RunFolder.SUMMARY).exists()


@dataclass
class Experiment:
    file: Path
    out: Path
    runs: list[Run]
    # --only: setting -> accepted values ("variant": the arm's name). A sweep trains the selected
    # runs it has not finished; results.csv still lists every finished run of the file.
    only: dict[str, set[Any]] = field(default_factory=dict)

    def relative(self, run: Run) -> str:
        return str(run.path.relative_to(self.out))

    def selected(self, run: Run) -> bool:
        settings = {**run.config.to_dict(), "variant": run.arm}
        return all(settings[key] in values for key, values in self.only.items())

    def pending(self) -> list[Run]:
        return [run for run in self.runs if not run.finished and self.selected(run)]

    def plan(self) -> str:
        """What --dry-run prints: each run still to do, then the counts."""
        pending = self.pending()
        lines = [
            f"{self.relative(run)}{'  (unfinished folder, will restart)' if run.path.exists() else ''}"
            for run in pending
        ]
        finished = sum(run.finished for run in self.runs)
        left_out = len(self.runs) - finished - len(pending)
        lines.append(
            f"{len(self.runs)} runs in {self.out}: {finished} already finished, {len(pending)} to do"
            + (f", {left_out} left out by --only." if left_out else ".")
        )
        return "\n".join(lines)


def parse_only(selections: Sequence[str]) -> dict[str, set[Any]]:
    """``--only KEY=VALUE`` (repeatable; several values of one key: any of them) -> accepted values per setting."""
    only: dict[str, set[Any]] = {}
    for selection in selections:
        key, separator, text = selection.partition("=")
        if not separator or not text:
            raise UserError(
                f"--only takes KEY=VALUE, e.g. --only seed=0 or --only variant=dense; got {selection!r}."
            )
        if key != "variant" and key not in setting_kinds():
            raise UserError(
                f"--only {selection}: {key!r} is not a run setting; use a key of the experiment file or 'variant'."
            )
        kind = str if key == "variant" else setting_kinds()[key]
        try:
            value = {
                bool: lambda t: {"true": True, "false": False}[t.lower()],
                list: lambda t: t.split(","),
            }.get(kind, kind)(text)
        except (KeyError, ValueError):
            raise UserError(
                f"--only {selection}: {text!r} is not a valid value for {key}."
            ) from None
        only.setdefault(key, set()).add(value)
    return only


def _coerce(key: str, value: Any, where: str) -> Any:
    """Check a TOML value against the TrainConfig field, so a typo fails before any training."""
    kind = setting_kinds()[key]
    if kind is list:
        valid = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif kind is float:
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        valid = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not valid:
        words = {
            list: "a list of strings",
            float: "a number",
            int: "an integer",
            str: "a string",
            bool: "true or false",
        }
        raise UserError(f"{key} in {where} must be {words[kind]}, got {value!r}.")
    return float(value) if kind is float else value


def _checked_table(table: dict[str, Any], where: str, is_grid: bool = False) -> dict[str, Any]:
    """Known TrainConfig keys with values of the right type; grid values are lists of those."""
    checked = {}
    for key, value in table.items():
        if key in SWEEP_OWNED:
            raise UserError(
                f"{key} in {where} is chosen by the sweep for each run; remove it and pass --out DIR to the sweep."
            )
        if key not in setting_kinds():
            raise UserError(
                f"unknown key {key!r} in {where}; use TrainConfig fields as in `sparsemomentum train --help` (with underscores)."
            )
        if is_grid:
            if not isinstance(value, list) or not value:
                raise UserError(
                    f"{key} in {where} must be a non-empty list of values, got {value!r}."
                )
            checked[key] = [_coerce(key, item, where) for item in value]
        else:
            checked[key] = _coerce(key, value, where)
    return checked


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with open(file, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(
            f"the experiment file {file} does not exist; pass the path of a .toml file such as experiments/mnist-lenet300.toml."
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(
            f"the experiment file {file} is not valid TOML ({error}); fix that line."
        ) from None


def _arms(
    document: dict[str, Any], file: Path, grid: dict[str, list]
) -> list[tuple[str | None, dict[str, Any]]]:
    """(name, overrides) per report row: one per grid method, one per [[variant]]."""
    arms: list[tuple[str | None, dict[str, Any]]] = [
        (method, {"method": method}) for method in grid.pop("method", [])
    ]
    variants = document.get("variant", [])
    if not isinstance(variants, list):
        raise UserError(
            f"variants in {file} must be [[variant]] entries (double brackets), not a [variant] table."
        )
    for index, variant in enumerate(variants, 1):
        variant = dict(variant)
        name = variant.pop("name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UserError(
                f"[[variant]] number {index} in {file} needs a name of letters, digits and . _ + = - (it names the run folders), got {name!r}."
            )
        arms.append((name, _checked_table(variant, f"[[variant]] {name!r} of {file}")))
    return arms or [(None, {})]


def _label(value: Any) -> str:
    """A grid value as it appears in a folder name."""
    return (
        ",".join(value)
        if isinstance(value, list)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def load_experiment(
    file: str | Path,
    out: str | Path | None = None,
    data_dir: str | None = None,
    only: Sequence[str] = (),
) -> Experiment:
    """Read and expand an experiment file; every run's config is validated before anything trains.

    ``only``: ``KEY=VALUE`` selections (see :func:`parse_only`) of the runs a sweep trains.
    """
    selected = parse_only(only)
    file = Path(file)
    document = _read_toml(file)
    for key, value in document.items():
        if key not in TABLES or (key != "variant" and not isinstance(value, dict)):
            raise UserError(
                f"unknown key {key!r} in {file}; an experiment file has a [base] table, a [grid] table and [[variant]] entries."
            )
    base = _checked_table(document.get("base", {}), f"[base] of {file}")
    grid = _checked_table(document.get("grid", {}), f"[grid] of {file}", is_grid=True)
    clashes = sorted(base.keys() & grid.keys())
    if clashes:
        raise UserError(
            f"{clashes[0]} is in both [base] and [grid] of {file}; keep it in one of them."
        )
    if data_dir is not None:
        base["data_dir"] = str(data_dir)
    root = Path(out) if out is not None else Path("runs") / file.stem
    arms = _arms(document, file, grid)
    extra_axes = [key for key in grid if key not in LAYOUT_AXES]

    runs: dict[Path, Run] = {}
    for name, overrides in arms:
        axes = {key: values for key, values in grid.items() if key not in overrides}
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            config = TrainConfig.from_settings({**base, **point, **overrides})
            arm = (name or config.method) + "".join(
                f"_{key}={_label(point[key])}" for key in extra_axes if key in point
            )
            config = replace(
                config,
                out=str(
                    run_path(root, arm, config.model, config.dataset, config.density, config.seed)
                ),
                overwrite=True,
            )
            try:
                config.validate()
            except UserError as error:
                raise UserError(
                    f"{file}, run {arm} at density {config.density:g}: {error}"
                ) from None
            run = Run(arm, config)
            if run.path in runs:
                raise UserError(
                    f"two runs of {file} share the folder {run.path}; give the [[variant]] entries different names."
                )
            runs[run.path] = run
    # Seed-major order: an interrupted sweep already compares every arm at the first seed.
    experiment = Experiment(
        file, root, sorted(runs.values(), key=lambda run: run.config.seed), selected
    )
    _check_finished_runs(experiment)
    return experiment


def _check_finished_runs(experiment: Experiment) -> None:
    """Refuse to skip a finished run that was trained with other settings than the file asks for."""
    for run in experiment.runs:
        saved_file = run.path / RunFolder.CONFIG
        if not run.finished or not saved_file.exists():
            continue
        saved = json.loads(saved_file.read_text())
        for key, wanted in run.config.to_dict().items():
            if key not in NOT_RESULTS and key in saved and saved[key] != wanted:
                raise UserError(
                    f"the finished run {run.path} was trained with {key}={saved[key]!r} but {experiment.file} asks for "
                    f"{wanted!r}; delete that folder to retrain it or pass another --out."
                )


def write_results(experiment: Experiment) -> Path:
    """One row per finished run (summary scalars, arm name, run path), replaced atomically."""
    rows = []
    for run in experiment.runs:
        if run.finished:
            summary = json.loads((run.path / RunFolder.SUMMARY).read_text())
            scalars = {
                key: value for key, value in summary.items() if not isinstance(value, (dict, list))
            }
            rows.append({"variant": run.arm, **scalars, "path": experiment.relative(run)})
    keys = {key for row in rows for key in row}
    columns = (
        [key for key in LEADING_COLUMNS if key in keys]
        + sorted(keys - {*LEADING_COLUMNS, "path"})
        + ["path"]
    )
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    experiment.out.mkdir(parents=True, exist_ok=True)
    write_atomically(experiment.out / RESULTS, text.getvalue())
    return experiment.out / RESULTS


def _attempt(trainer: Trainer, config: TrainConfig, progress: bool) -> str | None:
    """Train one run; a user-fixable failure becomes a message so the other runs go on."""
    try:
        trainer(config, progress)
    except UserError as error:
        return str(error)
    return None


def run_sweep(experiment: Experiment, jobs: int = 1, trainer: Trainer = train) -> int:
    """Train every unfinished run (``jobs`` at a time, one thread each); returns how many ran.

    results.csv is rewritten by this process after each run. Failed runs are reported at the
    end as one UserError; their folders have no summary.json, so the next sweep retries them.
    """
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}.")
    pending = experiment.pending()
    failures: list[str] = []
    bar = tqdm(total=len(pending), desc="sweep", unit="run", dynamic_ncols=True)

    def finished(run: Run, error: str | None) -> None:
        if error:
            failures.append(f"{experiment.relative(run)}: {error}")
            tqdm.write(f"failed {failures[-1]}")
        bar.update()
        write_results(experiment)

    try:
        if jobs == 1:
            for run in pending:
                tqdm.write(f"run {experiment.relative(run)}")
                finished(run, _attempt(trainer, run.config, True))
        else:
            # spawn, not fork: a forked copy of a process that already used torch's thread pools can hang.
            pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
            try:
                futures = {
                    pool.submit(_attempt, trainer, replace(run.config, threads=1), False): run
                    for run in pending
                }
                for future in as_completed(futures):
                    finished(futures[future], future.result())
            finally:
                pool.shutdown(cancel_futures=True)
    finally:
        bar.close()
    write_results(experiment)
    if failures:
        raise UserError(f"{len(failures)} of {len(pending)} runs failed, first {failures[0]}")
    return len(pending)
