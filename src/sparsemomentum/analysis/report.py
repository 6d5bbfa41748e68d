"""A report over finished runs: the paper's error table with our mean ± SE beside its numbers,
and the figures that explain them (layer densities, learning curves, error vs density).

Any folder works: a single run folder, a sweep folder, or anything holding run folders with
summary.json. Runs are grouped by (model, dataset) into one table each; a row is a method or
sweep variant, a column a density, and seeds are what the mean and standard error run over.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

from ..algorithms import METHODS
from ..errors import UserError
from ..runs import density_folder, write_atomically
from .against import section as against_section
from .cells import Cell, cell_text
from .paper import CITATION, paper_error
from .plots import pyplot, save_figure
from .records import UNTRAINED_LOSS_FRACTION, RunRecord, find_runs

DEFAULT_DENSITY = 0.05
REPORT = "report.md"


class Group:
    """The runs of one (model, dataset): one table and one set of figures. Means and figures
    are over the runs that trained; the table counts the others in their cells."""

    def __init__(self, model: str, dataset: str, runs: list[RunRecord]) -> None:
        self.model, self.dataset = model, dataset
        self.runs = [run for run in runs if run.trained]
        self.methods = {run.label: run.summary["method"] for run in runs}
        order = list(METHODS)
        self.labels = sorted(
            self.methods,
            key=lambda label: (
                self.methods[label] == "dense",
                order.index(label) if label in order else len(order),
                label,
            ),
        )
        scored = self.runs[0] if self.runs else runs[0]  # a diverged run has no score to name
        self.score_name = scored.score_name
        self.curve_key, self.curve_name = scored.curve
        self.densities = sorted({run.density for run in runs})
        errors: dict[tuple[str, float], list[float]] = defaultdict(list)
        self.untrained: Counter[tuple[str, float]] = Counter()
        for run in runs:
            if run.trained:
                errors[run.label, run.density].append(run.score)
            else:
                self.untrained[run.label, run.density] += 1
        self.cells = {key: Cell.of(values) for key, values in errors.items()}

    @property
    def title(self) -> str:
        return f"{self.model} on {self.dataset}"

    def paper(self, label: str, density: float) -> float | None:
        return paper_error(self.model, self.dataset, label, density)

    def best_sparse(self) -> dict[float, str]:
        """Per density, the sparse row with the lowest mean test error."""
        best = {}
        for density in self.densities:
            candidates = [
                label
                for label in self.labels
                if self.methods[label] != "dense" and (label, density) in self.cells
            ]
            if candidates:
                best[density] = min(candidates, key=lambda label: self.cells[label, density].mean)
        return best

    def figure_density(self, requested: float | None) -> float:
        """The density of figures (a) and (b): the requested one, else 5 %, else the nearest
        sparse one."""
        sparse = sorted({run.density for run in self.runs if not run.dense}) or self.densities
        if requested is not None:
            if round(requested, 6) not in self.densities:
                choices = ", ".join(f"{d:g}" for d in self.densities)
                raise UserError(
                    f"no runs at density {requested:g} for {self.title}; choose one of: {choices}."
                )
            return round(requested, 6)
        return min(sparse, key=lambda density: abs(math.log(density / DEFAULT_DENSITY)))

    def table(self) -> list[str]:
        paper_columns = {
            d
            for d in self.densities
            if any(self.paper(label, d) is not None for label in self.labels)
        }
        header, rule = ["method"], ["---"]
        for density in self.densities:
            header.append(_percent(density))
            rule.append("---:")
            if density in paper_columns:
                header.append("paper")
                rule.append("---:")
        lines = [_row(header), _row(rule)]
        for label in self.labels:
            cells = [label]
            for density in self.densities:
                cells.append(
                    cell_text(self.cells.get((label, density)), self.untrained[label, density])
                )
                if density in paper_columns:
                    reference = self.paper(label, density)
                    cells.append("–" if reference is None else f"{reference:g}")
            lines.append(_row(cells))
        return lines


def _percent(density: float) -> str:
    return f"{100 * density:g} %"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _colors(labels: list[str]) -> dict[str, str]:
    """One color per row, the same in every figure."""
    return {label: f"C{index % 10}" for index, label in enumerate(labels)}


def plot_layer_density(group: Group, density: float, path: Path) -> None:
    """(a) The paper's redistribution figure: per-layer density over epochs, one run per row."""
    plt = pyplot()
    chosen = {}
    for run in sorted(group.runs, key=lambda run: run.summary["seed"]):
        if run.density == density and run.metrics:
            chosen.setdefault(run.label, run)
    labels = [label for label in group.labels if label in chosen]
    columns = min(len(labels), 4)
    rows = math.ceil(len(labels) / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(4 * columns, 3.2 * rows),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    layers = list(
        dict.fromkeys(k for run in chosen.values() for k in run.metrics[0]["layer_density"])
    )
    colors = _layer_colors(plt, layers)
    for axis, label in zip(axes.flat, labels):
        metrics = chosen[label].metrics
        epochs = [m["epoch"] for m in metrics]
        for layer in metrics[0]["layer_density"]:
            densities = [100 * m["layer_density"][layer] for m in metrics]
            axis.plot(epochs, densities, label=layer, color=colors[layer])
        axis.set(title=f"{label} (seed {chosen[label].summary['seed']})", xlabel="epoch")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(labels) :]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel("density of layer (%)")
    # One legend for all panels, beside them: a transformer's 17 layers would cover a panel.
    handles, names = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside right upper", fontsize="small")
    figure.suptitle(f"Per-layer density over training, {group.title}, {_percent(density)} overall")
    save_figure(figure, path)
    plt.close(figure)


def _layer_colors(plt, layers: list[str]) -> dict[str, tuple]:
    """A distinct color per layer: tab10/tab20 while they last, then a sequential map in
    network order (deep networks: neighbouring layers get neighbouring shades)."""
    if len(layers) <= 20:
        palette = plt.get_cmap("tab10" if len(layers) <= 10 else "tab20")
        return {layer: palette(index) for index, layer in enumerate(layers)}
    palette = plt.get_cmap("viridis")
    return {layer: palette(index / (len(layers) - 1)) for index, layer in enumerate(layers)}


def _mean_curve(runs: list[RunRecord], key: str) -> tuple[list[int], list[float]]:
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for record in run.metrics:
            by_epoch[record["epoch"]].append(record[key])
    epochs = sorted(by_epoch)
    return epochs, [statistics.fmean(by_epoch[epoch]) for epoch in epochs]


def plot_validation_curve(group: Group, density: float, path: Path) -> None:
    """(b) The learning curve (validation accuracy, or bits per character for a language
    model) per epoch, mean over seeds, per row at one density; dense dashed."""
    plt = pyplot()
    colors = _colors(group.labels)
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for label in group.labels:
        runs = [
            run
            for run in group.runs
            if run.label == label and run.metrics and (run.density == density or run.dense)
        ]
        if runs:
            epochs, values = _mean_curve(runs, group.curve_key)
            axis.plot(
                epochs,
                values,
                color=colors[label],
                linestyle="--" if runs[0].dense else "-",
                label=f"{label} (n={len(runs)})",
            )
    axis.set(
        xlabel="epoch",
        ylabel=group.curve_name,
        title=f"{group.curve_name.capitalize()}, {group.title}, {_percent(density)} density",
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    save_figure(figure, path)
    plt.close(figure)


def plot_error_vs_density(group: Group, path: Path) -> None:
    """(c) Test error vs density with standard-error bars; dense and the paper as references."""
    plt = pyplot()
    colors = _colors(group.labels)
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for label in group.labels:
        points = [(d, group.cells[label, d]) for d in group.densities if (label, d) in group.cells]
        if group.methods[label] == "dense":
            for _, cell in points:
                axis.axhline(
                    cell.mean, color=colors[label], linestyle="--", label=f"{label} ({cell})"
                )
                if cell.se:
                    axis.axhspan(
                        cell.mean - cell.se, cell.mean + cell.se, color=colors[label], alpha=0.15
                    )
            continue
        densities = [100 * d for d, _ in points]
        axis.errorbar(
            densities,
            [c.mean for _, c in points],
            yerr=[c.se or 0.0 for _, c in points],
            color=colors[label],
            marker="o",
            capsize=3,
            label=label,
        )
        reference = [
            (100 * d, value)
            for d in group.densities
            if (value := group.paper(label, d)) is not None
        ]
        if reference:
            axis.scatter(
                *zip(*reference), facecolors="none", edgecolors=colors[label], marker="s", zorder=3
            )
    if any(group.paper(label, d) is not None for label in group.labels for d in group.densities):
        axis.scatter(
            [],
            [],
            facecolors="none",
            edgecolors="gray",
            marker="s",
            label=f"{CITATION} (open squares)",
        )
    # Log error axis: a method that fails at low density (static sparse at 1 %) would
    # otherwise flatten the differences between the others.
    axis.set(
        xscale="log",
        yscale="log",
        xlabel="density (% of weights, log scale)",
        ylabel=f"{group.score_name}, log scale",
        title=f"{group.score_name.capitalize()} vs density, {group.title}",
    )
    from matplotlib.ticker import FuncFormatter, LogLocator

    low, high = axis.get_ylim()
    # Within a decade, 1-2-5 leaves one labelled tick or none: label every integer multiple.
    subs = tuple(range(1, 10)) if high / low < 10 else (1, 2, 5)
    axis.yaxis.set_major_locator(LogLocator(subs=[float(s) for s in subs]))
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    sparse = [100 * d for d in group.densities if d < 1.0]
    axis.set_xticks(sparse, [f"{d:g}" for d in sparse])
    axis.minorticks_off()
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    save_figure(figure, path)
    plt.close(figure)


def _group_section(group: Group, out: Path, density: float | None) -> list[str]:
    """One (model, data set): the table beside the paper's, the best row, the figures."""
    lines = ["", f"## {group.title}", "", f"Rows: {group.score_name}, mean ± SE over seeds (runs).",
             "", *group.table(), ""]  # fmt: skip
    best = group.best_sparse()
    if best:
        lines.append(
            f"Lowest mean {group.score_name} among sparse methods: "
            + "; ".join(
                f"{_percent(d)}: {label} ({group.cells[label, d].mean:.2f})"
                for d, label in best.items()
            )
            + "."
        )
    prefix = f"{group.model}_{group.dataset}"
    chosen = group.figure_density(density)
    if any(run.metrics for run in group.runs if run.density == chosen):
        curve = group.curve_key.replace("_", "-")
        for kind, caption, plot in (
            ("layer-density", "Per-layer density over training", plot_layer_density),
            (curve, f"{group.curve_name.capitalize()} per epoch", plot_validation_curve),
        ):
            name = f"{prefix}_{kind}_{density_folder(chosen)}.png"
            plot(group, chosen, out / name)
            lines += ["", f"![{caption}, {_percent(chosen)} density]({name})"]
    if len({run.density for run in group.runs if not run.dense}) > 1:
        plot_error_vs_density(group, out / f"{prefix}_error-vs-density.png")
        caption = f"{group.score_name.capitalize()} vs density"
        lines += ["", f"![{caption}]({prefix}_error-vs-density.png)"]
    return lines


def _untrained_section(runs: list[RunRecord], root: Path) -> list[str]:
    """The runs left out of the means, listed with their error and loss, or why they stopped,
    so none goes unseen."""
    if not runs:
        return []
    margin = f"{100 * (1 - UNTRAINED_LOSS_FRACTION):g} %"
    lines = ["", "## Runs that did not train", "",
             f"Left out of every mean, table and figure above: each ended with a test loss within "
             f"{margin} of ln(classes), where an untrained classifier starts (a start it never "
             "left, or a collapse to a constant output), or diverged: its loss became NaN or "
             "infinite, and its folder keeps the last good checkpoint and no summary.json.", "",
             "| run | why | test error (%) | test loss |",
             "| --- | --- | ---: | ---: |"]  # fmt: skip
    for run in runs:
        where = run.path.relative_to(root) if run.path != root else Path(run.path.name)
        if run.diverged is not None:
            lines.append(f"| `{where}` | diverged: {run.diverged} | – | – |")
        else:
            scores = f"{run.score:.2f} | {run.summary['test_loss']:.4f}"
            lines.append(f"| `{where}` | test loss at ln(classes) | {scores} |")
    return lines


def _counted(runs: list[RunRecord], root: str | os.PathLike) -> str:
    """'12 finished runs' (and 'and 3 that diverged') 'under `root`'."""
    diverged = sum(run.diverged is not None for run in runs)
    also = f" and {diverged} that diverged" if diverged else ""
    return f"{len(runs) - diverged} finished runs{also} under `{root}`"


def write_report(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    density: float | None = None,
    against: str | None = None,
    baseline: str | None = None,
    only: Sequence[str] = (),
) -> Path:
    """Write report.md and its PNG figures into ``out`` (default: ``root``); returns report.md.

    ``against``: also the test error against this swept setting (``against.section``), as
    differences to the row ``baseline`` if given; ``only``: ``KEY=VALUE`` selections of runs."""
    if baseline is not None and against is None:
        raise UserError("--baseline needs --against: the setting to draw the differences over.")
    runs = find_runs(root, only)
    out = Path(out) if out is not None else Path(root)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for report.md and the figures.")
    out.mkdir(parents=True, exist_ok=True)
    trained = [run for run in runs if run.trained]
    untrained = [run for run in runs if not run.trained]
    grouped: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for run in runs:
        grouped[run.summary["model"], run.summary["dataset"]].append(run)

    lines = [
        "# Report",
        "",
        _counted(runs, root)
        + (f" ({len(untrained)} did not train: listed at the end)" if untrained else "")
        + ". Test error in % (bits per character for "
        "language models) as mean ± standard error over seeds (number of runs); *paper*: the "
        f"value reported by {CITATION}, where there is one.",
    ]
    # First the section a mistyped setting or baseline row fails in, before any figure is drawn
    against_lines = []
    if against is not None and trained:
        against_lines = against_section(runs, against, baseline, out)
    elif against is not None:
        against_lines = [
            "",
            f"No run trained, so there is no test error against `{against}` to draw.",
        ]
    for (model, dataset), members in sorted(grouped.items()):
        lines += _group_section(Group(model, dataset, members), out, density)
    lines += against_lines + _untrained_section(untrained, Path(root))
    report = out / REPORT
    write_atomically(report, "\n".join(lines) + "\n")
    return report
