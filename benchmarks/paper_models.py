"""Whole training epochs of the paper's networks: dense vs masked vs sparse backend, in one run.

    python benchmarks/paper_models.py --threads 2 [--models wrn-16-8 vgg16-d] [--json PATH]
    python benchmarks/paper_models.py --learn      # first: the learned per-layer densities

An epoch is sampled, not run whole: each variant times ``--steps`` plain steps per round,
alternating with the others (the order rotates every round), and the sparse backend also
times steps inside the momentum window (dense weight gradients) and one mask update with the
step after it. The time of a real epoch of E steps (CIFAR: 45,000 training images at batch
128 = 352 steps; ImageNet: 5,005 at 256) with a 50-step window is then

    dense  = E x plain          masked = E x plain + update
    sparse = (E - 50) x plain + 50 x window + update + (first step after it - plain)

from the medians over rounds. Steps are what training does: zero_grad, forward,
cross-entropy, backward, ``sparsifier.step()`` (SGD, Nesterov momentum 0.9, weight decay
5e-4) on random CIFAR-shaped batches (ImageNet-shaped for ResNet-50), in train mode.

Per-layer densities, three ways: ``uniform`` (the paper), ``erk`` (RigL), and ``learned``:
where sparse momentum's redistribution moves the weights in a real training run. CIFAR is
not available here, so ``--learn`` trains each network with sparse momentum on Fashion-MNIST
padded to 32x32 and repeated over 3 channels (224x224 by nearest upsampling for ResNet-50),
with mask updates every 20 steps, and saves the per-layer densities it reaches to
benchmarks/learned_densities.json; the timing run places random masks with those counts.

Beside each measured ratio: the FLOP ratio of the conv and linear layers at these per-layer
densities (what perfect sparse kernels could give those layers, before BatchNorm, ReLU and
pooling, which sparsity does not shrink), the paper's estimator on the same masks
(``analysis.speedup.estimate_speedup``: dense forward time of each conv layer scaled by weight
x input-activation density, conv layers only), and the paper's reported range. Each
distribution keeps its masks: the timed mask update is undone after the step that follows it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import sparsemomentum as sm
from sparsemomentum import data
from sparsemomentum.analysis.speedup import estimate_speedup
from sparsemomentum.core import allocation, selection

LEARNED = Path(__file__).with_name("learned_densities.json")
WINDOW = 50
PAPER_RANGE = "3.0-5.61"  # the paper's sparse-convolution estimates over its CIFAR networks


@dataclass(frozen=True)
class Setting:
    model: str
    densities: tuple[float, ...]
    size: int = 32  # input height and width
    batch: int = 128
    epoch_steps: int = 352  # CIFAR: 45,000 / 128


SETTINGS = [
    *(Setting(name, (0.05,)) for name in ("alexnet-s", "alexnet-b", "vgg16-c", "vgg16-d")),
    *(Setting(name, (0.05,)) for name in ("wrn-16-8", "wrn-16-10", "wrn-22-8")),
    Setting("wrn-28-2", (0.1, 0.2, 0.3, 0.5)),
    # ImageNet: 1.28 M images at batch 256 = 5,005 steps; batch 32 keeps a step in seconds.
    Setting("resnet50", (0.1, 0.2, 0.3), size=224, batch=32, epoch_steps=5005),
]


@dataclass(eq=False)
class Variant:
    """One model with its optimizer and sparsifier (None: plain dense SGD), and its times."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sparsifier: sm.Sparsifier | None
    times: dict[str, list[float]] = field(default_factory=dict)

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(inputs), labels).backward()
        (self.sparsifier or self.optimizer).step()
        return time.perf_counter() - started

    def record(self, label: str, seconds: float) -> None:
        self.times.setdefault(label, []).append(seconds)

    def median(self, label: str) -> float:
        return statistics.median(self.times[label])


def build(
    setting: Setting,
    density: float,
    backend: str | None,
    distribution: str = "uniform",
    counts: dict[str, int] | None = None,
) -> Variant:
    torch.manual_seed(0)  # the same initial weights in every variant
    model = sm.create_model(setting.model, num_classes=10)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sparsifier = None
    if backend is not None:
        # epoch-wise updates far away: the window opens only when a step is forced into it
        sparsifier = sm.SparseMomentum(
            model, optimizer, density=density, total_steps=10**9, steps_per_epoch=10**8,
            distribution=distribution, backend=backend,
        )  # fmt: skip
        if counts is not None:
            place(sparsifier, counts)
    return Variant(backend or "dense", model, optimizer, sparsifier)


def place(sparsifier: sm.Sparsifier, counts: dict[str, int]) -> None:
    """Random masks with the given per-layer counts (the learned distribution)."""
    generator = torch.Generator().manual_seed(1)
    sparsifier.masks = {
        name: selection.random_mask(weight.shape, counts[name], generator, weight.device)
        for name, weight in sparsifier.weights.items()
    }
    sparsifier.masks_changed()


def learned_densities() -> dict[str, dict[str, dict[str, float]]]:
    """Per network and density, the per-layer densities `--learn` saved (none learned yet: {})."""
    return json.loads(LEARNED.read_text()) if LEARNED.exists() else {}


def learned_counts(setting: Setting, density: float, sparsifier: sm.Sparsifier) -> dict[str, int]:
    """The learned per-layer densities as counts that sum exactly to the sparsifier's target."""
    saved = learned_densities()[setting.model][f"{density:g}"]
    sizes = {name: weight.numel() for name, weight in sparsifier.weights.items()}
    weights = [saved[name] * sizes[name] for name in sizes]
    counts = allocation.allocate(sparsifier.target_nonzero_count(), weights, list(sizes.values()))
    return dict(zip(sizes, counts))


def time_round(variants: list[Variant], inputs, labels, steps: int) -> None:
    """``steps`` plain steps of every variant; the sparse ones also a window step and an update."""
    for variant in variants:
        for _ in range(steps):
            variant.record("plain", variant.step(inputs, labels))
        if variant.sparsifier is None:
            continue
        if variant.name == "sparse":
            variant.sparsifier.backend.set_dense_gradient(True)  # as inside the momentum window
            variant.record("window", variant.step(inputs, labels))
        masks = {name: mask.clone() for name, mask in variant.sparsifier.masks.items()}
        started = time.perf_counter()
        variant.sparsifier.update_masks()
        variant.record("update", time.perf_counter() - started)
        variant.record("after", variant.step(inputs, labels))
        keep_distribution(variant.sparsifier, masks)


def keep_distribution(sparsifier: sm.Sparsifier, masks: dict[str, torch.Tensor]) -> None:
    """Put the masks from before the update back. One update on random batches moves much
    of the network's weights (VGG16-D's first three layers fill to 98-100 %), so without this
    every row after the first round would time that distribution, not its own."""
    sparsifier.masks = masks
    sparsifier.masks_changed()


def epoch_seconds(variant: Variant, setting: Setting) -> float:
    plain = variant.median("plain")
    if variant.sparsifier is None:
        return setting.epoch_steps * plain
    update = variant.median("update") + variant.median("after") - plain
    if variant.name != "sparse":
        return setting.epoch_steps * plain + update
    window = variant.median("window")
    return (setting.epoch_steps - WINDOW) * plain + WINDOW * window + update


def measure(setting: Setting, density: float, rounds: int, steps: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(setting.batch, 3, setting.size, setting.size, generator=generator)
    labels = torch.randint(0, 10, (setting.batch,), generator=generator)
    dense, masked = build(setting, density, None), build(setting, density, "masked")
    sparse = {"uniform": build(setting, density, "sparse"),
              "erk": build(setting, density, "sparse", "erk")}  # fmt: skip
    if f"{density:g}" in learned_densities().get(setting.model, {}):
        counts = learned_counts(setting, density, sparse["uniform"].sparsifier)
        sparse["learned"] = build(setting, density, "sparse", counts=counts)
    variants = [dense, masked, *sparse.values()]
    for variant in variants:  # warm-up: first touch of buffers and optimizer state
        variant.step(inputs, labels)
    for index in range(rounds):
        shift = index % len(variants)
        time_round(variants[shift:] + variants[:shift], inputs, labels, steps)
    return [record(setting, density, name, dense, masked, variant, inputs)
            for name, variant in sparse.items()]  # fmt: skip


def record(setting, density, distribution, dense, masked, sparse, inputs) -> dict:
    estimate = estimate_speedup(sparse.model, sparse.sparsifier.masks, inputs[:16], repeats=3)
    seconds = {v.name: epoch_seconds(v, setting) for v in (dense, masked, sparse)}
    return {
        "model": setting.model, "density": density, "distribution": distribution,
        "batch": setting.batch, "epoch_steps": setting.epoch_steps, "epoch_seconds": seconds,
        "dense_over_masked": seconds["dense"] / seconds["masked"],
        "dense_over_sparse": seconds["dense"] / seconds["sparse"],
        "estimator": estimate.totals[0].sparse_conv_speedup,
        "flop_ratio": estimate.totals[-1].flop_speedup,
        "sparse_step_ms": {k: statistics.median(v) * 1e3 for k, v in sparse.times.items()},
        "layer_density": sparse.sparsifier.layer_densities(),
        "dense_layers": dict(sparse.sparsifier.backend.kernels.dense),
    }  # fmt: skip


def cifar_shaped(images: torch.Tensor, size: int) -> torch.Tensor:
    """Fashion-MNIST images [n, 1, 28, 28] padded to 32x32 and repeated over 3 channels, then
    upsampled (nearest) to ``size``: a batch at a time, since the whole training set at
    224x224 would take 36 GB."""
    images = F.pad(images, (2, 2, 2, 2)).repeat(1, 3, 1, 1)
    return images if size == 32 else F.interpolate(images, size=size, mode="nearest")


def learn(setting: Setting, density: float, data_dir: str, steps: int) -> dict[str, float]:
    """Per-layer densities after ``steps`` steps of sparse momentum on CIFAR-shaped
    Fashion-MNIST (updates every 20 steps, cosine prune rate over the run)."""
    splits = data.load_dataset("fashion-mnist", data.data_root(data_dir), download=False)
    torch.manual_seed(0)
    model = sm.create_model(setting.model, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)  # fmt: skip
    sparsifier = sm.SparseMomentum(model, optimizer, density=density, total_steps=steps,
                                   update_interval=20, backend="sparse")  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        index = torch.randint(0, len(splits.train.labels), (setting.batch,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        inputs = cifar_shaped(splits.train.inputs[index], setting.size)
        loss = F.cross_entropy(model(inputs), splits.train.labels[index])
        loss.backward()
        sparsifier.step()
        if step % 20 == 19:
            print(
                f"  {setting.model} {density:g} step {step + 1}: loss {loss.item():.3f}", flush=True
            )
    return sparsifier.layer_densities()


def print_table(records: list[dict]) -> None:
    print("| network | density | distribution | dense s/epoch | masked | sparse | dense/masked "
          "| dense/sparse | FLOP ratio | estimator (conv fwd) | paper |")  # fmt: skip
    print("|---" * 11 + "|")
    for r in records:
        s = r["epoch_seconds"]
        print(
            f"| {r['model']} | {r['density']:.0%} | {r['distribution']} | {s['dense']:.0f} | "
            f"{s['masked']:.0f} | {s['sparse']:.0f} | {r['dense_over_masked']:.2f}x | "
            f"**{r['dense_over_sparse']:.2f}x** | {r['flop_ratio']:.2f}x | {r['estimator']:.2f}x | "
            f"{PAPER_RANGE} |"
        )


def chosen(densities: tuple[float, ...], only: list[float] | None) -> list[float]:
    return [density for density in densities if not only or density in only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="only these networks (default: all)")
    parser.add_argument("--densities", nargs="*", type=float, help="only these densities")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="plain steps per variant and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the records here")
    parser.add_argument("--learn", action="store_true", help="learn the per-layer densities")
    parser.add_argument("--learn-steps", type=int, default=120)
    parser.add_argument("--data-dir", default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    settings = [s for s in SETTINGS if not arguments.models or s.model in arguments.models]
    if arguments.learn:
        learned = learned_densities()
        for setting in settings:
            for density in chosen(setting.densities, arguments.densities):
                layers = learn(setting, density, arguments.data_dir, arguments.learn_steps)
                learned.setdefault(setting.model, {})[f"{density:g}"] = layers
                LEARNED.write_text(json.dumps(learned, indent=1, sort_keys=True) + "\n")
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {arguments.rounds} "
        f"rounds of {arguments.steps} plain steps per variant; epoch window {WINDOW} steps"
    )
    records = []
    for setting in settings:
        for density in chosen(setting.densities, arguments.densities):
            measured = measure(setting, density, arguments.rounds, arguments.steps)
            print_table(measured)
            records += measured
            if arguments.json:  # after every network: a long run that stops keeps what it timed
                arguments.json.write_text(json.dumps(records, indent=1) + "\n")
    print_table(records)


if __name__ == "__main__":
    main()
