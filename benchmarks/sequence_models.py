"""Whole training steps of the character-level language models: dense vs masked vs sparse.

    python benchmarks/sequence_models.py --threads 2 [--batch 12] [--densities 0.1 0.2 0.5]

A step is what ``--preset shakespeare-char`` trains: 12 windows of 64 characters, AdamW,
cross-entropy over every position. The three variants alternate in rounds of five steps in
one process; medians over rounds. The sparse backend runs the Transformer's Linear layers
(query/key/value projection, attention output, MLP) on its kernels with the tokens as rows;
attention's own products, the LSTM's fused recurrent kernel and the embeddings stay dense.
With `--profile sparse` (or `dense`) it also profiles one gpt-char step of that kind (where
the time goes, and the share of the dense products `aten::mm` + `aten::addmm`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import sparsemomentum as sm


def build(name: str, density: float, backend: str | None, optimizer: str):
    torch.manual_seed(0)
    model = sm.create_model(name, num_classes=84)
    if optimizer == "adamw":
        optim = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    else:
        optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sparsifier = None
    if backend is not None:  # updates far away: plain steps, as between two mask updates
        sparsifier = sm.SparseMomentum(
            model, optim, density=density, total_steps=10**6, steps_per_epoch=10**5, backend=backend
        )
    return model, optim, sparsifier


def step(model, optimizer, sparsifier, tokens) -> None:
    optimizer.zero_grad(set_to_none=True)
    logits = model(tokens)
    F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    (sparsifier or optimizer).step()


def measure(name: str, density: float, batch: int, optimizer: str, rounds: int) -> dict:
    tokens = torch.randint(0, 84, (batch, 64), generator=torch.Generator().manual_seed(0))
    variants = {
        label: build(name, density, backend, optimizer)
        for label, backend in (("dense", None), ("masked", "masked"), ("sparse", "sparse"))
    }
    times: dict[str, list[float]] = {label: [] for label in variants}
    for variant in variants.values():
        step(*variant, tokens)
        step(*variant, tokens)
    for _ in range(rounds):
        for label, variant in variants.items():
            started = time.perf_counter()
            for _ in range(5):
                step(*variant, tokens)
            times[label].append((time.perf_counter() - started) / 5 * 1e3)
    medians = {label: statistics.median(values) for label, values in times.items()}
    kernels = variants["sparse"][2].backend.kernels
    return {
        "model": name,
        "density": density,
        "batch": batch,
        "ms": medians,
        "sparse_layers": len(kernels.sparse),
        "dense_layers": len(kernels.dense),
    }


def profile(name: str, density: float, batch: int, optimizer: str, backend: str | None) -> None:
    """Where a step's time goes; and the share of the dense products (``aten::mm`` and
    ``aten::addmm``: in a dense step the Linear layers', what sparse kernels could replace)."""
    tokens = torch.randint(0, 84, (batch, 64))
    variant = build(name, density, backend, optimizer)
    for _ in range(3):
        step(*variant, tokens)
    with torch.profiler.profile() as profiler:
        for _ in range(10):
            step(*variant, tokens)
    events = profiler.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    total = sum(event.self_cpu_time_total for event in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm"))
    print(f"aten::mm + aten::addmm: {products / total:.1%} of the {backend or 'dense'} step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["gpt-char", "lstm-char"])
    parser.add_argument("--densities", nargs="*", type=float, default=[0.1, 0.2, 0.5])
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--profile",
        choices=["sparse", "dense"],
        help="also profile a gpt-char step of this kind (first density, --batch)",
    )
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
        f"{arguments.batch} x 64, {arguments.optimizer}, medians of {arguments.rounds} rounds"
    )
    print(
        "| model | density | dense ms | masked ms | sparse ms | dense/sparse | layers on kernels |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in arguments.models:
        for density in arguments.densities:
            r = measure(name, density, arguments.batch, arguments.optimizer, arguments.rounds)
            ms = r["ms"]
            print(
                f"| {name} | {density:.0%} | {ms['dense']:.1f} | {ms['masked']:.1f} | "
                f"{ms['sparse']:.1f} | {ms['dense'] / ms['sparse']:.2f}x | "
                f"{r['sparse_layers']} of {r['sparse_layers'] + r['dense_layers']} |",
                flush=True,
            )
    if arguments.profile:
        backend = None if arguments.profile == "dense" else "sparse"
        profile("gpt-char", arguments.densities[0], arguments.batch, arguments.optimizer, backend)


if __name__ == "__main__":
    main()
