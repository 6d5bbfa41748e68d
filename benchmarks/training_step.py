"""Whole training steps: dense SGD against SparseMomentum (masked and sparse backends), in one run.

    python benchmarks/training_step.py [--quick] [--json PATH] [--interval 540] [--window 50]
        [--threads 1] [--models MLP LeNet-300]

A step is what training does: zero_grad, forward, cross-entropy backward, then
``optimizer.step()`` (dense) or ``sparsifier.step()`` (SGD with Nesterov momentum 0.9,
weight decay 5e-4 in all three). The three variants alternate in chunks of 5 steps within
one process (the order rotates every round), so load from other processes hits all alike.

Mask updates are real, and so is the momentum window: the sparsifiers update their masks
every ``PERIOD`` steps (short, so that a run of a few dozen steps sees several updates) with
a window of ``MEASURED_WINDOW`` dense-dW steps before each. Every step is timed and labelled
by what it did (see ``per_step_ms``), and the time per step of a real epoch of ``--interval``
steps (540: MNIST at batch 100) with a ``--window`` of 50 is the label-weighted sum of the
label medians. Flat inputs reach the sparse variant feature-major (stored as X^T, passed
as X^T.t(), as docs/cpu-sparse-kernels.md advises) and the dense ones batch-major, each
the layout that suits it.

One thread by default: while other processes keep both cores busy, torch's two OpenMP
threads wait on each other at every barrier (LeNet-300-100, batch 100, a dense step took
3 ms on one thread and 160 ms on two under the sweep's load). Pass ``--threads 2`` on an
idle machine to compare with docs/cpu-sparse-kernels.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from kernels import cpu_name
from torch import nn

import sparsemomentum as sm

CHUNK = 5  # steps per variant before switching to the next
WARMUP_STEPS = 2  # first touch of buffers, optimizer state; fewer than PERIOD - 1, so no update yet
PERIOD = 10  # the measuring sparsifiers' update interval
MEASURED_WINDOW = 4  # their momentum window: 3 dense-dW steps, the update step, 5 plain, 1 after
VARIANTS = {"dense": None, "masked": "masked", "sparse": "sparse"}  # name -> sparsifier backend

# What a step did, decided by the sparsifier's own state around it.
PLAIN = "plain"  # sparse backend: dW at the non-zeros only; masked and dense: every ordinary step
WINDOW = "dense dW"  # sparse backend inside the momentum window: the full dW for momentum growth
# The window's last step, whose sparsifier.step() ran update_masks (and the CSR rebuild).
UPDATE = "update"
# The first step on new layouts: fresh dW buffers are allocated and first touched.
AFTER = "after update"


@dataclass(frozen=True)
class Config:
    model: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one example
    classes: int
    density: float
    batch: int


def mlp_4096() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10)
    )


def wrn_conv_layer() -> nn.Module:
    """A WRN-sized 3x3 convolution (128 channels, WRN-16-8's first-stage width), pooled into 128
    logits for the loss."""
    return nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def configs(quick: bool) -> list[Config]:
    lenet300 = partial(
        Config, "LeNet-300-100", partial(sm.create_model, "lenet300-100"), (784,), 10
    )
    mlp = partial(Config, "MLP 784-4096-4096-10", mlp_4096, (784,), 10)
    lenet5 = partial(
        Config, "LeNet-5-Caffe", partial(sm.create_model, "lenet5-caffe"), (1, 28, 28), 10
    )
    conv = partial(Config, "WRN conv 128->128 3x3, 16x16", wrn_conv_layer, (128, 16, 16), 128)
    if quick:
        return [
            lenet300(0.05, 100),
            lenet300(0.01, 100),
            mlp(0.01, 128),
            lenet5(0.05, 100),
            conv(0.05, 32),
        ]
    return [lenet300(density, batch) for batch in (100, 128) for density in (0.05, 0.01)] + [
        mlp(0.05, 128),
        mlp(0.01, 128),
        lenet5(0.05, 100),
        conv(0.05, 128),
    ]


@dataclass(eq=False)
class Variant:
    """One model, its optimizer, its sparsifier (None: plain dense SGD) and its step times by
    label."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    sparsifier: sm.Sparsifier | None
    inputs: torch.Tensor
    labels: torch.Tensor
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    after_update: bool = False

    @classmethod
    def create(
        cls, config: Config, backend: str | None, inputs: torch.Tensor, labels: torch.Tensor
    ) -> Variant:
        torch.manual_seed(0)  # the same initial weights in every variant
        model = config.build()
        optimizer = torch.optim.SGD(
            model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        sparsifier = None
        if backend is not None:
            # total_steps far away: updates never stop and the prune rate stays near 0.5, as early
            # in training.
            sparsifier = sm.SparseMomentum(
                model,
                optimizer,
                density=config.density,
                total_steps=10**9,
                backend=backend,
                update_interval=PERIOD,
                momentum_window=MEASURED_WINDOW,
            )
            if backend == "sparse" and inputs.dim() == 2:
                inputs = (
                    inputs.t().contiguous().t()
                )  # X^T in memory: the sparse kernel reads it without a copy
        return cls(model, optimizer, sparsifier, inputs, labels)

    @property
    def sparse_layers(self) -> int:
        kernels = getattr(self.sparsifier.backend, "kernels", None) if self.sparsifier else None
        return len(kernels.sparse) if kernels is not None else 0

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.inputs), self.labels).backward()
        if self.sparsifier is None:
            self.optimizer.step()
        else:
            self.sparsifier.step()

    def timed_steps(self, count: int) -> None:
        for _ in range(count):
            label = AFTER if self.after_update else PLAIN
            if label == PLAIN and self.sparse_layers and self.sparsifier.dense_gradient_needed():
                label = WINDOW
            updates = self.sparsifier.update_count if self.sparsifier is not None else 0
            started = time.perf_counter()
            self.step()
            elapsed = time.perf_counter() - started
            self.after_update = (
                self.sparsifier is not None and self.sparsifier.update_count > updates
            )
            self.samples[UPDATE if self.after_update else label].append(elapsed)

    def medians_ms(self) -> dict[str, float]:
        return {label: statistics.median(times) * 1e3 for label, times in self.samples.items()}


def per_step_ms(medians: dict[str, float], interval: int, window: int) -> float:
    """Mean step time over one mask-update interval, from the medians of the labels a run showed.

    An interval of ``interval`` steps holds one update step (the window's last: dense dW plus
    the update itself), one first step after it, ``window - 1`` more dense-dW steps where the
    sparse backend has them, and plain steps for the rest. Dense SGD has only plain steps.
    """
    counts = {
        label: count
        for label, count in ((UPDATE, 1), (AFTER, 1), (WINDOW, window - 1))
        if label in medians
    }
    counts[PLAIN] = interval - sum(counts.values())
    return sum(medians[label] * count for label, count in counts.items()) / interval


def warm_up(variant: Variant) -> float:
    """Untimed steps (first touch of every buffer, optimizer state); the last one's seconds size the
    run."""
    for _ in range(WARMUP_STEPS):
        started = time.perf_counter()
        variant.step()
    return time.perf_counter() - started


def measure(
    config: Config, budget_s: float, min_periods: int, max_rounds: int
) -> dict[str, Variant]:
    """Rounds of CHUNK steps per variant: as many as fit ``budget_s``, at least ``min_periods``
    update periods."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(config.batch, *config.input_shape, generator=generator)
    labels = torch.randint(0, config.classes, (config.batch,), generator=generator)
    variants = {
        name: Variant.create(config, backend, inputs, labels) for name, backend in VARIANTS.items()
    }
    round_seconds = CHUNK * sum(warm_up(variant) for variant in variants.values())
    rounds = max(
        math.ceil(min_periods * PERIOD / CHUNK), min(max_rounds, int(budget_s / round_seconds))
    )
    order = list(variants.values())
    for index in range(rounds):
        for variant in order[index % len(order) :] + order[: index % len(order)]:
            variant.timed_steps(CHUNK)
    return variants


def result_record(config: Config, variants: dict[str, Variant], interval: int, window: int) -> dict:
    sparse = variants["sparse"]
    medians = {name: variant.medians_ms() for name, variant in variants.items()}
    per_step = {name: per_step_ms(medians[name], interval, window) for name in variants}
    return {
        "model": config.model,
        "density": config.density,
        "batch": config.batch,
        "per_step_ms": per_step,
        "dense_over_masked": per_step["dense"] / per_step["masked"],
        "dense_over_sparse": per_step["dense"] / per_step["sparse"],
        # Plain dense SGD and the masked mode compute the full dW in every step.
        "sparse_dense_dw_share": window / interval if sparse.sparse_layers else 1.0,
        "label_medians_ms": medians,
        "label_samples": {
            name: {label: len(times) for label, times in variant.samples.items()}
            for name, variant in variants.items()
        },
        "sparse_layers": sparse.sparse_layers,
        "dense_in_sparse_backend": dict(sparse.sparsifier.backend.kernels.dense),
    }


def print_table(records: list[dict]) -> None:
    print(
        "| model | density | batch | dense ms | masked ms | sparse ms | dense/masked | "
        f"dense/sparse | sparse: dense-dW steps | sparse: {PLAIN} / {WINDOW} / {UPDATE} / {AFTER} "
        "ms |"
    )
    print("|---" * 10 + "|")
    for record in records:
        per_step, phases = record["per_step_ms"], record["label_medians_ms"]["sparse"]
        phase_text = " / ".join(
            f"{phases[label]:.2f}" if label in phases else "-"
            for label in (PLAIN, WINDOW, UPDATE, AFTER)
        )
        print(
            f"| {record['model']} | {record['density']:.0%} | {record['batch']} | "
            f"{per_step['dense']:.2f} | {per_step['masked']:.2f} | {per_step['sparse']:.2f} | "
            f"{record['dense_over_masked']:.2f}x | {record['dense_over_sparse']:.2f}x | "
            f"{record['sparse_dense_dw_share']:.1%} | {phase_text} |"
        )


def print_dense_layers(records: list[dict]) -> None:
    """Which masked layers the sparse backend left on the dense path, and its reason, once per
    model."""
    seen = set()
    for record in records:
        if record["model"] in seen or not record["dense_in_sparse_backend"]:
            continue
        seen.add(record["model"])
        by_reason = defaultdict(list)
        for name, reason in record["dense_in_sparse_backend"].items():
            by_reason[reason].append(name)
        for reason, names in by_reason.items():
            verb = "stays" if len(names) == 1 else "stay"
            print(
                f"- {record['model']}: {', '.join(names)} {verb} dense in the sparse backend "
                f"({reason})."
            )
        if not record["sparse_layers"]:
            print(
                f"- {record['model']}: no layer runs sparse kernels, so 'sparse' is the masked "
                "mode with sparse-backend bookkeeping; expect ~1x against masked and < 1x against "
                "dense."
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="about 30 s: five settings, one update period each"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--interval", type=int, default=540, help="steps between mask updates in the real run (540)"
    )
    parser.add_argument(
        "--window", type=int, default=50, help="momentum window of the real run, in steps (50)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: robust on a busy machine)"
    )
    parser.add_argument(
        "--models",
        nargs="*",
        help="only the settings whose model name starts with one of these (e.g. MLP LeNet-300)",
    )
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    if not 1 <= arguments.window <= arguments.interval - 2:
        parser.error(
            "--window must be between 1 and --interval - 2: an interval has its update step and "
            "the step after it"
        )
    budget_s, min_periods, max_rounds = (3.0, 1, 20) if arguments.quick else (15.0, 2, 100)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}, load average "
        f"{os.getloadavg()[0]:.1f}; per-step ms over an update interval of {arguments.interval} "
        f"steps with a {arguments.window}-step momentum window (measured with real updates every "
        f"{PERIOD} steps); medians of each kind of step, dense / masked / sparse alternating in "
        f"chunks of {CHUNK}\n",
        flush=True,
    )
    records = []
    chosen = [
        config
        for config in configs(arguments.quick)
        if not arguments.models
        or config.model.lower().startswith(tuple(name.lower() for name in arguments.models))
    ]
    if not chosen:
        parser.error(f"no setting's model starts with {' or '.join(arguments.models)}")
    for config in chosen:
        variants = measure(config, budget_s, min_periods, max_rounds)
        records.append(result_record(config, variants, arguments.interval, arguments.window))
        print(
            f"  measured {config.model}, {config.density:.0%}, batch {config.batch}: "
            f"{sum(map(len, variants['dense'].samples.values()))} steps per variant",
            flush=True,
        )
    print()
    print_table(records)
    print()
    print_dense_layers(records)
    print(
        "- ratios are dense ms / variant ms: > 1 means faster than dense SGD. 'dense-dW steps': "
        "share of steps in which the sparse backend computes the full weight gradient (momentum "
        "window incl. the update step)."
    )
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "cpu": cpu_name(),
                    "interval": arguments.interval,
                    "window": arguments.window,
                    "measured_period": PERIOD,
                    "measured_window": MEASURED_WINDOW,
                    "results": records,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
