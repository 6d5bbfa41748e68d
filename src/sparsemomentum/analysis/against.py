"""A metric against any swept setting, from the runs' own records, with standard-error bars.

``sparsemomentum report DIR --against prune_rate`` draws, for every row of the report (a
method or sweep variant), the mean test error over seeds at each value of the setting,
and writes the table and each row's spread (max - min of the means) into report.md. The
setting can be anything a run's config.json or summary.json holds: a method option
(``prune_rate``), a run setting (``momentum``), or a property of the model the summary
records (``parameters``, ``sparse_layers``). With ``--baseline ARM`` the figure shows each
row's difference from that row at the same value instead (the SEs combined), which is the
benefit of one part over another when the rows are ablation variants.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from pathlib import Path

from ..errors import UserError
from .cells import Cell, cell_text
from .plots import pyplot, save_figure
from .records import RunRecord


def _place(run: RunRecord, setting: str) -> tuple[str, float] | None:
    """The run's row (its label without the setting) and its value of the setting, if a
    number."""
    value = run.setting(setting)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return re.sub(rf"_{re.escape(setting)}=[^_ ]*", "", run.label), float(value)


def untrained_counts(runs: list[RunRecord], setting: str) -> Counter[tuple[str, float]]:
    """How many runs at each (row, value) did not train, so that a table can say so."""
    return Counter(place for run in runs if not run.trained and (place := _place(run, setting)))


def series(runs: list[RunRecord], setting: str) -> dict[str, dict[float, Cell]]:
    """Row -> setting value -> test error over the seeds that trained."""
    errors: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        place = _place(run, setting) if run.trained else None
        if place is not None:
            row, value = place
            errors[row][value].append(run.score)
    if not errors:
        raise UserError(
            f"no run records a number for {setting!r}; use a swept setting such as prune_rate, "
            "momentum, density, parameters or sparse_layers."
        )
    return {row: {x: Cell.of(v) for x, v in sorted(by.items())} for row, by in errors.items()}


def differences(table: dict[str, dict[float, Cell]], baseline: str) -> dict[str, dict[float, Cell]]:
    """Each row minus ``baseline`` where both have the value; standard errors combined."""
    if baseline not in table:
        raise UserError(f"no row named {baseline!r}; choose one of: {', '.join(sorted(table))}.")
    base = table[baseline]
    return {
        row: {x: _difference(cell, base[x]) for x, cell in cells.items() if x in base}
        for row, cells in table.items()
        if row != baseline
    }


def _difference(cell: Cell, base: Cell) -> Cell:
    """A difference has a standard error where the row has one (several seeds)."""
    se = math.hypot(cell.se, base.se or 0.0) if cell.se is not None else None
    return Cell(cell.mean - base.mean, se, cell.n)


def markdown(
    table: dict[str, dict[float, Cell]],
    setting: str,
    untrained: Counter[tuple[str, float]] | None = None,
) -> list[str]:
    """One row per series: mean ± SE (n) at each value, then the spread of the means; a value
    where runs did not train says how many. A row measured at one value has no spread: 0.00
    there would read as insensitivity that was never measured."""
    untrained = untrained or Counter()
    values = sorted({x for points in table.values() for x in points} | {x for _, x in untrained})
    lines = [
        "| row | " + " | ".join(f"{setting} = {_number(x)}" for x in values) + " | spread |",
        "|---" * (len(values) + 2) + "|",
    ]
    for row in [*table, *sorted({row for row, _ in untrained} - set(table))]:
        points = table.get(row, {})
        cells = [cell_text(points.get(x), untrained[row, x]) for x in values]
        means = [p.mean for p in points.values()]
        spread = f"{max(means) - min(means):.2f}" if len(means) > 1 else "–"
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {spread} |")
    return lines


def _number(value: float) -> str:
    """Counts with thousands separators (1,796,010, not 1.79601e+06), other values short."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _models_at(runs: list[RunRecord], setting: str) -> str:
    """Which model has which value of a model setting, e.g. 'mlp-100x2: 89,610'."""
    models = {run.summary["model"]: run.setting(setting) for run in runs}
    ordered = sorted(models.items(), key=lambda item: (item[1], item[0]))
    return "; ".join(f"{model}: {_number(value)}" for model, value in ordered)


def plot(
    table: dict[str, dict[float, Cell]], setting: str, title: str, ylabel: str, path: Path
) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for index, (row, points) in enumerate(table.items()):
        cells = list(points.values())
        axis.errorbar(list(points), [c.mean for c in cells], yerr=[c.se or 0.0 for c in cells],
                      marker="o", capsize=3, color=f"C{index % 10}", label=row)  # fmt: skip
    if setting in ("parameters", "sparse_weights"):
        axis.set_xscale("log")
    if "difference" in ylabel:
        axis.axhline(0.0, color="gray", linewidth=0.8)
    axis.set(xlabel=setting, ylabel=ylabel, title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    save_figure(figure, path)
    plt.close(figure)


# Settings that describe the model: their figures span the models of a data set.
MODEL_SETTINGS = ("parameters", "sparse_weights", "sparse_layers")


def section(runs: list[RunRecord], setting: str, baseline: str | None, out: Path) -> list[str]:
    """The report's lines (table, spread, figure) for the metric against ``setting``: means
    over the runs that trained, with a count of those that did not."""
    groups: dict[tuple[str, ...], list[RunRecord]] = defaultdict(list)
    for run in runs:
        model = () if setting in MODEL_SETTINGS else (run.summary["model"],)
        groups[(*model, run.summary["dataset"])].append(run)
    lines = []
    for key, members in sorted(groups.items()):
        title = " on ".join(key)
        trained = [run for run in members if run.trained]
        if not trained:
            lines += ["", f"No run on {title} trained, so there is nothing to draw against "
                      f"{setting} there."]  # fmt: skip
            continue
        table = series(trained, setting)
        score = trained[0].score_name
        lines += ["", f"## {score.capitalize()} against {setting}, {title}", "",
                  *markdown(table, setting, untrained_counts(members, setting))]  # fmt: skip
        if setting in MODEL_SETTINGS:
            lines += ["", f"Models by {setting}: {_models_at(trained, setting)}."]
        ylabel = score
        if baseline is not None:
            table = differences(table, baseline)
            ylabel = f"{score}: difference to {baseline}"
            lines += ["", f"Difference to {baseline} (positive: {baseline} is better):", "",
                      *markdown(table, setting)]  # fmt: skip
        name = f"{'_'.join(key)}_error-vs-{setting}.png"
        plot(table, setting, f"{title}: mean ± SE over seeds", ylabel, out / name)
        lines += ["", f"![{score} against {setting}]({name})"]
    return lines
