"""Plots of one run: per-layer density over training (the paper's redistribution figure)
and the learning curves. matplotlib is imported on first use so importing the library and
starting the CLI stay fast."""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_file
from ..runs import read_metrics


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path) -> None:
    """Write through a temporary file so a killed run never leaves a half-written PNG."""
    with atomic_file(path) as out:
        figure.savefig(out, format="png", dpi=120, bbox_inches="tight")


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write density.png and curves.png into ``run_dir``; returns their paths."""
    plt = pyplot()
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    epochs = [m["epoch"] for m in metrics]
    written = []

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for layer in metrics[0]["layer_density"]:
        axis.plot(epochs, [100 * m["layer_density"][layer] for m in metrics], label=layer)
    axis.set(xlabel="epoch", ylabel="density of layer (%)", title="Per-layer density over training")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    save_figure(figure, run_dir / "density.png")
    plt.close(figure)
    written.append(run_dir / "density.png")

    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_axis.plot(epochs, [m["train_loss"] for m in metrics], label="train")
    loss_axis.plot(epochs, [m["validation_loss"] for m in metrics], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss", yscale="log", title="Loss")
    loss_axis.legend()
    accuracy_axis.plot(epochs, [m["validation_accuracy"] for m in metrics], color="tab:green")
    accuracy_axis.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
    save_figure(figure, run_dir / "curves.png")
    plt.close(figure)
    written.append(run_dir / "curves.png")
    return written
