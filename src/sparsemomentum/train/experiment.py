"""Experiment files: a grid of runs, read, checked and expanded before anything trains.

An experiment file (TOML) is the record of what a table or figure is made of:

    [base]                  run settings and method options shared by every run
    [grid]                  settings with a list of values; runs are the product
    [[variant]]             a name plus fixed settings, e.g. an ablation

Each value of ``grid.method`` and each ``[[variant]]`` is one *arm* (a row of the report),
crossed with the other grid axes; a key an arm sets replaces the grid axis of that name, so
``{name = "dense", method = "dense", density = 1.0}`` trains the dense baseline once per seed
instead of once per density. Every run lives in DIR/<model>/<dataset>/<arm>/d<density>/s<seed>/
(``runs.layout``) and is finished when its summary.json exists.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from ..algorithms import METHODS, method_options
from ..errors import UserError
from ..runs import CHECKPOINT, NOT_RESULT_SETTINGS, RunFolder, run_path
from .config import TrainConfig

TABLES = ("base", "grid", "variant")
# The folder layout names these; any other grid axis is appended to the arm's folder name.
LAYOUT_AXES = ("model", "dataset", "method", "density", "seed")
# Chosen by the sweep for each run, so an experiment file may not set them.
SWEEP_OWNED = ("out", "overwrite", "resume")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")
_WORDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}


def setting_kinds() -> dict[str, Any]:
    """Run setting or method option -> the type a TOML value must have (``list[int]`` and
    ``list[str]`` for lists); method options come from the methods registered now."""
    kinds: dict[str, Any] = {name: option.kind for name, option in method_options().items()}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        if name == "method_options":
            continue
        if typing.get_origin(hint) is list:
            kinds[name] = hint
        else:
            kinds[name] = next(t for t in (*typing.get_args(hint), hint) if t in _WORDS)
    return kinds


def _valid(kind: Any, value: Any) -> bool:
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        return isinstance(value, list) and all(_valid(item, entry) for entry in value)
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        return f"a list of {_describe(typing.get_args(kind)[0]).split(' ', 1)[1]}s"
    return _WORDS[kind]


def _coerce(key: str, value: Any, where: str, kinds: dict[str, Any]) -> Any:
    """Check a TOML value against the setting, so a typo fails before any training."""
    kind = kinds[key]
    if not _valid(kind, value):
        raise UserError(f"{key} in {where} must be {_describe(kind)}, got {value!r}.")
    return float(value) if kind is float else value


def _checked_table(table: dict[str, Any], where: str, is_grid: bool = False) -> dict[str, Any]:
    """Known settings with values of the right type; grid values are lists of those."""
    kinds = setting_kinds()
    checked = {}
    for key, value in table.items():
        if key in SWEEP_OWNED:
            raise UserError(
                f"{key} in {where} is chosen by the sweep for each run (a killed run resumes by "
                "itself); remove it, and pass --out DIR to the sweep for another folder."
            )
        if key not in kinds:
            raise UserError(
                f"unknown key {key!r} in {where}; use the options of `sparsemomentum train "
                "--help` (with underscores)."
            )
        if is_grid:
            if not isinstance(value, list) or not value:
                raise UserError(
                    f"{key} in {where} must be a non-empty list of values, got {value!r}."
                )
            checked[key] = [_coerce(key, item, where, kinds) for item in value]
        else:
            checked[key] = _coerce(key, value, where, kinds)
    return checked


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

    def resumable(self) -> bool:
        """An unfinished folder of this very run (same recipe) with a checkpoint to go on from."""
        if self.finished or not (self.path / CHECKPOINT).exists():
            return False
        return not differences(self.path, self.config)


def differences(run_dir: Path, config: TrainConfig) -> list[tuple[str, Any, Any]]:
    """(setting, saved value, wanted value) where the run folder's config.json differs from
    ``config`` in a setting that changes results; a missing or damaged config.json differs."""
    try:
        saved = json.loads((run_dir / RunFolder.CONFIG).read_text())
    except (OSError, ValueError):
        return [("config.json", None, "a readable file")]
    if not isinstance(saved, dict):
        return [("config.json", saved, "a mapping")]
    wanted = config.to_dict()
    return [
        (key, saved.get(key), value)
        for key, value in wanted.items()
        if key not in NOT_RESULT_SETTINGS and key in saved and saved[key] != value
    ]


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
        plain = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        return all(plain.get(key) in values for key, values in self.only.items())

    def pending(self) -> list[Run]:
        return [run for run in self.runs if not run.finished and self.selected(run)]

    def plan(self) -> str:
        """What --dry-run prints: each run still to do and how, then the counts."""
        lines = []
        for run in self.pending():
            how = ""
            if run.resumable():
                how = "  (unfinished, will resume from its checkpoint)"
            elif run.path.exists():
                how = "  (unfinished folder without a usable checkpoint, will restart)"
            lines.append(self.relative(run) + how)
        finished = sum(run.finished for run in self.runs)
        left_out = len(self.runs) - finished - len(lines)
        lines.append(
            f"{len(self.runs)} runs in {self.out}: {finished} already finished, {len(lines)} to do"
            + (f", {left_out} left out by --only." if left_out else ".")
        )
        return "\n".join(lines)


def parse_only(selections: Sequence[str]) -> dict[str, set[Any]]:
    """``--only KEY=VALUE`` (repeatable; several values of one key: any of them) -> accepted
    values per setting."""
    kinds = setting_kinds()
    only: dict[str, set[Any]] = {}
    for selection in selections:
        key, separator, text = selection.partition("=")
        if not separator or not text:
            raise UserError(
                "--only takes KEY=VALUE, e.g. --only seed=0 or --only variant=dense; got "
                f"{selection!r}."
            )
        if key != "variant" and key not in kinds:
            raise UserError(
                f"--only {selection}: {key!r} is not a run setting; use a key of the experiment "
                "file or 'variant'."
            )
        kind = str if key == "variant" else kinds[key]
        try:
            only.setdefault(key, set()).add(_parse_value(kind, text))
        except (KeyError, ValueError):
            raise UserError(
                f"--only {selection}: {text!r} is not a valid value for {key}."
            ) from None
    return only


def _parse_value(kind: Any, text: str) -> Any:
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        return tuple(item(part) for part in text.split(","))
    if kind is bool:
        return {"true": True, "false": False}[text.lower()]
    return kind(text)


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with open(file, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(
            f"the experiment file {file} does not exist; pass the path of a .toml file such as "
            "experiments/mnist-lenet300.toml."
        ) from None
    except IsADirectoryError:
        raise UserError(f"{file} is a folder; pass the path of an experiment .toml file.") from None
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
            f"variants in {file} must be [[variant]] entries (double brackets), not a [variant] "
            "table."
        )
    for index, variant in enumerate(variants, 1):
        variant = dict(variant)
        name = variant.pop("name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UserError(
                f"[[variant]] number {index} in {file} needs a name of letters, digits and "
                f". _ + = - (it names the run folders), got {name!r}."
            )
        arms.append((name, _checked_table(variant, f"[[variant]] {name!r} of {file}")))
    return arms or [(None, {})]


def _label(value: Any) -> str:
    """A grid value as it appears in a folder name."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_experiment(
    file: str | Path,
    out: str | Path | None = None,
    data_dir: str | None = None,
    only: Sequence[str] = (),
) -> Experiment:
    """Read and expand an experiment file; every run's config is validated before anything
    trains. ``only``: ``KEY=VALUE`` selections (see :func:`parse_only`) of the runs to train."""
    selected = parse_only(only)
    file = Path(file)
    base, grid, arms = _read_tables(file)
    if data_dir is not None:
        base["data_dir"] = str(data_dir)
    root = Path(out) if out is not None else Path("runs") / file.stem
    extra_axes = [key for key in grid if key not in LAYOUT_AXES]
    runs: dict[Path, Run] = {}
    for name, overrides in arms:
        axes = {key: values for key, values in grid.items() if key not in overrides}
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            arm_label = "".join(f"_{k}={_label(point[k])}" for k in extra_axes if k in point)
            method = {**base, **point, **overrides}.get("method", "sparse-momentum")
            shared = _for_method(base, method)
            run = _run(file, root, {**shared, **point, **overrides}, name, arm_label)
            if run.path in runs:
                raise UserError(
                    f"two runs of {file} share the folder {run.path}; give the [[variant]] "
                    "entries different names."
                )
            runs[run.path] = run
    # Seed-major order: an interrupted sweep already compares every arm at the first seed.
    ordered = sorted(runs.values(), key=lambda run: run.config.seed)
    experiment = Experiment(file, root, ordered, selected)
    _check_finished_runs(experiment)
    return experiment


def _for_method(base: dict[str, Any], method: str) -> dict[str, Any]:
    """[base] without the method options ``method`` lacks: a shared update interval does not
    stop the static and dense arms of the same grid."""
    if method not in METHODS:
        return base  # refused by name when the run is validated
    own = {spec.name for spec in fields(METHODS[method])}
    options = method_options()
    return {key: value for key, value in base.items() if key not in options or key in own}


def _read_tables(file: Path) -> tuple[dict, dict, list[tuple[str | None, dict[str, Any]]]]:
    document = _read_toml(file)
    for key, value in document.items():
        if key not in TABLES or (key != "variant" and not isinstance(value, dict)):
            raise UserError(
                f"unknown key {key!r} in {file}; an experiment file has a [base] table, a [grid] "
                "table and [[variant]] entries."
            )
    base = _checked_table(document.get("base", {}), f"[base] of {file}")
    grid = _checked_table(document.get("grid", {}), f"[grid] of {file}", is_grid=True)
    if "grid" not in document and "variant" not in document:
        raise UserError(
            f"{file} defines no runs to sweep: add a [grid] table (e.g. seed = [0, 1, 2]) or "
            "[[variant]] entries."
        )
    clashes = sorted(base.keys() & grid.keys())
    if clashes:
        raise UserError(
            f"{clashes[0]} is in both [base] and [grid] of {file}; keep it in one of them."
        )
    return base, grid, _arms(document, file, grid)


def _run(file: Path, root: Path, settings: dict[str, Any], name: str | None, label: str) -> Run:
    config = TrainConfig.from_settings(settings)
    arm = (name or config.method) + label
    folder = run_path(root, arm, config.model, config.dataset, config.density, config.seed)
    config = replace(config, out=str(folder), overwrite=True)
    try:
        config.validate()
    except UserError as error:
        raise UserError(f"{file}, run {arm} at density {config.density:g}: {error}") from None
    return Run(arm, config)


def _check_finished_runs(experiment: Experiment) -> None:
    """Refuse to skip a finished run that was trained with other settings than the file asks for."""
    for run in experiment.runs:
        if not run.finished or not (run.path / RunFolder.CONFIG).exists():
            continue
        for key, saved, wanted in differences(run.path, run.config)[:1]:
            raise UserError(
                f"the finished run {run.path} was trained with {key}={saved!r} but "
                f"{experiment.file} asks for {wanted!r}; delete that folder to retrain it or pass "
                "another --out."
            )
