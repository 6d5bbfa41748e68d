"""LeNet-300-100 on MNIST at 5 % density with the paper's recipe, against dense.

    python benchmarks/mnist_lenet300.py --data-dir ../shared/data [--seeds 0 1 2] [--epochs 100]

Trains sparse momentum and the dense baseline for each seed and prints the test error as
mean ± standard error beside the paper's (sparse momentum 1.53 ± 0.02, dense 1.34 ± 0.01).
Each run's folder goes under --out, so the figures can be checked afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from sparsemomentum.train.config import TrainConfig
from sparsemomentum.train.loop import train

PAPER = {"sparse-momentum": (1.53, 0.02), "dense": (1.34, 0.011)}


def mean_and_standard_error(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return mean, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--out", default="runs/benchmark-lenet300")
    arguments = parser.parse_args()

    results: dict[str, list[dict]] = {"sparse-momentum": [], "dense": []}
    for seed in arguments.seeds:
        for method in results:
            config = TrainConfig.from_settings(
                dict(
                    method=method,
                    density=arguments.density if method != "dense" else None,
                    epochs=arguments.epochs,
                    seed=seed,
                    data_dir=arguments.data_dir,
                    out=f"{arguments.out}/{method}-seed{seed}",
                    overwrite=True,
                )
            )
            summary = train(config, progress=False)
            results[method].append(summary)
            print(
                f"{method:16s} seed {seed}: test error {summary['test_error']:.2f} %  "
                f"({summary['seconds']:.0f} s)",
                flush=True,
            )

    print(
        f"\nLeNet-300-100, MNIST, density {arguments.density}, {arguments.epochs} epochs, seeds "
        f"{arguments.seeds}"
    )
    print(f"{'method':16s} {'test error % (ours)':>22s} {'paper':>14s} {'s per run':>10s}")
    table = {}
    for method, runs in results.items():
        mean, error = mean_and_standard_error([r["test_error"] for r in runs])
        seconds = statistics.fmean(r["seconds"] for r in runs)
        paper_mean, paper_error = PAPER[method]
        print(
            f"{method:16s} {mean:14.2f} ± {error:.2f} {paper_mean:8.2f} ± {paper_error:.2f} "
            f"{seconds:10.0f}"
        )
        table[method] = {
            "mean_test_error": mean,
            "standard_error": error,
            "seconds_per_run": seconds,
            "test_errors": [r["test_error"] for r in runs],
            "paper": PAPER[method],
        }
    Path(arguments.out).mkdir(parents=True, exist_ok=True)
    (Path(arguments.out) / "results.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
