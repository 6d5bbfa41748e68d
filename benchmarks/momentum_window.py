"""Does the momentum window change what sparse momentum decides?

    python benchmarks/momentum_window.py --data-dir ../shared/data [--seeds 0 1 2]
        [--epochs 100] [--window 50]

Two measurements, LeNet-300-100 on MNIST at 5 %, the paper's recipe:

1. Mask overlap. One exact run (dense weight gradients every step) also keeps, beside the
   true momentum, the momentum the sparse backend would have: for missing weights the
   gradient enters only in the last ``window`` steps before each update (outside it, it is
   0 and the buffer only decays). At every update, both momenta pick the weights to grow
   from the same candidates; the overlap is |chosen by window & chosen exactly| / |chosen|.
2. End to end. Full trainings with ``backend="masked"`` (exact) and ``backend="sparse"``
   (window) for each seed: test error and wall time of each, side by side.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import torch

import sparsemomentum as sm
from sparsemomentum.core import selection
from sparsemomentum.core.optimizer_state import momentum_of
from sparsemomentum.train.config import TrainConfig
from sparsemomentum.train.loop import train


@dataclass(eq=False)
class WindowShadow(sm.SparseMomentum):
    """Exact sparse momentum that also tracks the windowed momentum and compares choices."""

    window: int = 50
    steps_per_update: int = 540

    def __post_init__(self) -> None:
        super().__post_init__()
        self.shadow = {name: torch.zeros_like(w) for name, w in self.weights.items()}
        self.overlaps: list[float] = []
        self._chosen = self._agreeing = 0

    def step(self, scaler=None) -> bool:
        in_window = self.steps_per_update - self.step_count % self.steps_per_update <= self.window
        gradients = {name: w.grad.detach().clone() for name, w in self.weights.items()}
        taken = super().step(scaler)
        momentum = self.optimizer.param_groups[0]["momentum"]
        for name, weight in self.weights.items():
            exact = momentum_of(self.optimizer, weight)
            missing = self.shadow[name].mul_(momentum)
            if in_window:
                missing.add_(gradients[name])
            self.shadow[name] = torch.where(self.masks[name], exact, missing)
        return taken

    def grow(self, name: str, count: int) -> torch.Tensor:
        exact = super().grow(name, count)
        windowed = selection.grow_largest(self.masks[name], self.shadow[name].abs(), count)
        grown_exact, grown_window = exact & ~self.masks[name], windowed & ~self.masks[name]
        self._chosen += int(grown_exact.sum())
        self._agreeing += int((grown_exact & grown_window).sum())
        return exact

    def update_masks(self):
        report = super().update_masks()
        if report is not None and self._chosen:
            self.overlaps.append(self._agreeing / self._chosen)
            self._chosen = self._agreeing = 0
            for (
                name,
                weight,
            ) in self.weights.items():  # after an update both start from the true momentum
                self.shadow[name] = momentum_of(self.optimizer, weight).clone()
        return report


def measure_overlap(data_dir: str | None, epochs: int, window: int, seed: int) -> list[float]:
    from sparsemomentum.data import data_root, load_dataset

    torch.manual_seed(seed)
    splits = load_dataset("mnist", data_root(data_dir), download=False)
    model = sm.create_model("lenet300-100")
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    steps = len(splits.train) // 100
    sparsifier = WindowShadow(
        model,
        optimizer,
        density=0.05,
        total_steps=epochs * steps,
        seed=seed,
        window=window,
        steps_per_update=steps,
    )
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, 25000, 0.1)
    shuffle = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for inputs, labels in splits.train.batches(100, shuffle=True, generator=shuffle):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), labels).backward()
            sparsifier.step()
            schedule.step()
        sparsifier.update_masks()
    return sparsifier.overlaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument(
        "--overlap-epochs", type=int, default=20, help="epochs of the overlap measurement"
    )
    parser.add_argument("--out", default="runs/momentum-window")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: fair beside other jobs)"
    )
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)

    overlaps = measure_overlap(
        arguments.data_dir, arguments.overlap_epochs, arguments.window, arguments.seeds[0]
    )
    print(
        f"mask overlap, window {arguments.window}, {len(overlaps)} updates: mean "
        f"{statistics.fmean(overlaps):.4f}, min {min(overlaps):.4f}, first {overlaps[0]:.4f}, last "
        f"{overlaps[-1]:.4f}",
        flush=True,
    )

    results: dict[str, list[dict]] = {"masked": [], "sparse": []}
    for seed in arguments.seeds:
        for backend in results:
            config = TrainConfig.from_settings(
                dict(
                    density=0.05,
                    epochs=arguments.epochs,
                    seed=seed,
                    backend=backend,
                    momentum_window=arguments.window if backend == "sparse" else None,
                    data_dir=arguments.data_dir,
                    out=f"{arguments.out}/{backend}-seed{seed}",
                    overwrite=True,
                )
            )
            summary = train(config, progress=False)
            results[backend].append(summary)
            print(
                f"{backend:7s} seed {seed}: test error {summary['test_error']:.2f} %, "
                f"{summary['seconds']:.0f} s",
                flush=True,
            )
    print("\n| backend | test error % (mean ± SE) | seconds per run |\n|---|---|---|")
    for backend, runs in results.items():
        errors = [r["test_error"] for r in runs]
        error = statistics.stdev(errors) / len(errors) ** 0.5 if len(errors) > 1 else float("nan")
        print(
            f"| {backend} | {statistics.fmean(errors):.2f} ± {error:.2f} | "
            f"{statistics.fmean(r['seconds'] for r in runs):.0f} |"
        )


if __name__ == "__main__":
    main()
