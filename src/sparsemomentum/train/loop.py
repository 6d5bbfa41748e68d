"""The training loop, to be read top to bottom.

    config -> data -> model -> optimizer -> sparsifier -> epochs (step, update masks,
    validate, log) -> test -> summary

Everything the run decides is in the config; everything it learns goes to the run folder.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import algorithms, data, models
from ..analysis.plots import plot_run
from ..core.sparsifier import Sparsifier
from ..errors import UserError
from .config import TrainConfig
from .run_folder import RunFolder


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay,
        )
    adam = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return adam(model.parameters(), lr=config.lr, betas=(config.momentum, 0.999), weight_decay=config.weight_decay)


def build_sparsifier(config: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer, total_steps: int) -> Sparsifier:
    options = dict(config.method_options(), density=config.density, total_steps=total_steps, seed=config.seed,
                   include=tuple(config.include), exclude=tuple(config.exclude))
    return algorithms.create_sparsifier(config.method, model, optimizer, **options)


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: data.Split, batch_size: int = 1000) -> tuple[float, float]:
    """(accuracy in %, mean loss) of ``model`` on an in-memory split."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for inputs, labels in split.batches(batch_size):
        logits = model(inputs)
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
    count = len(split)
    return 100.0 * correct / count, loss_sum / count


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run one training and return its summary (also written to the run folder, if any)."""
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    run = RunFolder(config.out, config.overwrite) if config.out else None
    torch.manual_seed(config.seed)
    splits = data.load_dataset(config.dataset, data.data_root(config.data_dir), config.download)
    model = models.create_model(config.model, num_classes=splits.num_classes)
    optimizer = build_optimizer(config, model)
    steps_per_epoch = data.batch_count(splits.train, config.batch_size)
    sparsifier = build_sparsifier(config, model, optimizer, config.epochs * steps_per_epoch)
    lr_schedule = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_decay_every, config.lr_decay_factor)
    shuffle = torch.Generator().manual_seed(config.seed)
    if run:
        run.write_json(RunFolder.CONFIG, {**config.to_dict(), "resolved": algorithms.resolved_options(sparsifier)})

    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros(())
        bar = tqdm(splits.train.batches(config.batch_size, shuffle=True, generator=shuffle),
                   total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", leave=False,
                   disable=None if progress else True)
        for inputs, labels in bar:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            sparsifier.step()
            lr_schedule.step()
            loss_sum += loss.detach()
        train_loss = float(loss_sum) / steps_per_epoch
        if not torch.isfinite(torch.tensor(train_loss)):
            raise UserError(f"the training loss became {train_loss} in epoch {epoch}; lower --lr and run again.")
        if sparsifier.update_interval is None:
            sparsifier.update_masks()
        validation_accuracy, validation_loss = evaluate(model, splits.validation)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "validation_accuracy": validation_accuracy,
            "validation_loss": validation_loss,
            "prune_rate": sparsifier.current_prune_rate(),
            "lr": optimizer.param_groups[0]["lr"],
            "nonzero": sparsifier.nonzero_count(),
            "layer_density": sparsifier.layer_densities(),
            "seconds": time.perf_counter() - epoch_started,
        }
        if run:
            run.append_metrics(record)
        if progress:
            tqdm.write(
                f"epoch {epoch:3d}  loss {train_loss:.4f}  val acc {validation_accuracy:6.2f} %  "
                f"density {sparsifier.nonzero_count() / sum(m.numel() for m in sparsifier.masks.values()):.4f}  "
                f"prune rate {record['prune_rate']:.3f}  {record['seconds']:.1f} s"
            )

    test_accuracy, test_loss = evaluate(model, splits.test)
    summary = {
        "model": config.model, "dataset": config.dataset, "method": config.method,
        "density": sparsifier.density, "seed": config.seed, "epochs": config.epochs,
        "test_accuracy": test_accuracy, "test_error": 100.0 - test_accuracy, "test_loss": test_loss,
        "validation_accuracy": validation_accuracy,
        "nonzero": sparsifier.nonzero_count(), "target_nonzero": sparsifier.target_nonzero_count(),
        "layer_density": sparsifier.layer_densities(),
        "mask_updates": sparsifier.update_count,
        "seconds": time.perf_counter() - started,
    }
    if run:
        run.write_json(RunFolder.SUMMARY, summary)
        plot_run(run.path)
    return summary
