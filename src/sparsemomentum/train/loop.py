"""The training loop, to be read top to bottom.

    config -> data -> model -> optimizer -> sparsifier -> epochs (step, update masks,
    validate, log, checkpoint) -> test -> summary

Everything the run decides is in the config; everything it learns goes to the run folder.
Under torchrun every rank runs this same function on its shard of each global batch; only
rank 0 writes files and shows progress.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .. import algorithms, data, models
from ..analysis.plots import plot_run
from ..core.sparsifier import Sparsifier
from ..errors import UserError
from ..runs import CHECKPOINT, RunFolder, load_checkpoint, save_checkpoint
from . import distributed
from .config import TrainConfig


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def build_sparsifier(
    config: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    group: distributed.ProcessGroup = distributed.ProcessGroup(),
) -> Sparsifier:
    options = dict(
        config.method_options(),
        density=config.density,
        total_steps=total_steps,
        seed=config.seed,
        include=tuple(config.include),
        exclude=tuple(config.exclude),
    )
    if config.layer_types:
        options["layer_types"] = tuple(getattr(torch.nn, name) for name in config.layer_types)
    if group.distributed:
        options["mask_check"] = lambda masks: distributed.check_masks_agree(masks, group)
    return algorithms.create_sparsifier(config.method, model, optimizer, **options)


def build_lr_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """Stepped every iteration: warm-up, then decay every ``lr_decay_every`` steps (MNIST/CIFAR
    recipe) or at ``lr_milestones`` epochs (ImageNet recipe)."""
    warmup_steps = config.warmup_epochs * steps_per_epoch
    milestones = [epoch * steps_per_epoch for epoch in config.lr_milestones]

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        decays = sum(step >= m for m in milestones) if milestones else step // config.lr_decay_every
        return warm * config.lr_decay_factor**decays

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, split: data.Split, device: torch.device, batch_size: int = 1000
) -> tuple[float, float]:
    """(accuracy in %, mean loss) of ``model`` on a split."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for inputs, labels in split.batches(batch_size):
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(inputs)
        loss_sum += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
    count = len(split)
    return 100.0 * correct / count, loss_sum / count


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) one training and return its summary (also written to the run folder)."""
    if config.resume:
        config = TrainConfig.from_run(
            config.resume, data_dir=config.data_dir, threads=config.threads
        )
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    group = distributed.setup(
        torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    )
    try:
        return _train(config, progress and group.is_main, group.device, group)
    finally:
        distributed.teardown(group)


def _train(
    config: TrainConfig, progress: bool, device: torch.device, group: distributed.ProcessGroup
) -> dict[str, Any]:
    run = None
    if config.out and group.is_main:
        run = RunFolder(config.out, config.overwrite, resume=bool(config.resume))
    torch.manual_seed(config.seed)
    splits = data.load_dataset(config.dataset, data.data_root(config.data_dir), config.download)
    model = models.create_model(config.model, num_classes=splits.num_classes).to(device)
    optimizer = config.build_optimizer(model)
    steps_per_epoch = data.batch_count(splits.train, config.batch_size)
    sparsifier = build_sparsifier(config, model, optimizer, config.epochs * steps_per_epoch, group)
    lr_schedule = build_lr_schedule(config, optimizer, steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    autocast = (
        torch.autocast(
            device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16
        )
        if config.amp
        else contextlib.nullcontext()
    )
    if group.distributed:
        network = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        network = model

    def checkpoint(
        epoch: int, step_in_epoch: int, epoch_shuffle_state: torch.Tensor, loss_sum: torch.Tensor
    ) -> None:
        """Everything needed to continue bit-identically: the run goes on at step ``step_in_epoch``
        + 1 of ``epoch``, whose batch order comes from ``epoch_shuffle_state``."""
        if run is None:
            return
        save_checkpoint(
            run.path,
            {
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "loss_sum": loss_sum,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "sparsifier": sparsifier.state_dict(),
                "lr_schedule": lr_schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler else {},
                "epoch_shuffle_state": epoch_shuffle_state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                "num_classes": splits.num_classes,
            },
        )

    first_epoch, skip_steps, resumed_loss = 1, 0, torch.zeros(())
    if config.resume:
        state = load_checkpoint(Path(config.out))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sparsifier.load_state_dict(state["sparsifier"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        if scaler:
            scaler.load_state_dict(state["scaler"])
        shuffle.set_state(state["epoch_shuffle_state"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        first_epoch, skip_steps, resumed_loss = (
            state["epoch"],
            state["step_in_epoch"],
            state["loss_sum"],
        )
        if run:
            run.keep_metrics_before(first_epoch)
    elif run:
        run.write_json(
            RunFolder.CONFIG,
            {**config.to_dict(), "resolved": algorithms.resolved_options(sparsifier)},
        )
    if progress and sparsifier.kernels is not None:
        dense = (
            "; ".join(f"{name} ({reason})" for name, reason in sparsifier.kernels.dense.items())
            or "none"
        )
        tqdm.write(f"sparse kernels: {', '.join(sparsifier.kernels.sparse)}; dense: {dense}")

    started = time.perf_counter()
    validation_accuracy = None
    for epoch in range(first_epoch, config.epochs + 1):
        epoch_started = time.perf_counter()
        epoch_shuffle_state = shuffle.get_state()
        network.train()
        loss_sum = resumed_loss if epoch == first_epoch else torch.zeros(())
        batches = splits.train.batches(config.batch_size, shuffle=True, generator=shuffle)
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            leave=False,
            disable=None if progress else True,
        )
        for step_in_epoch, (inputs, labels) in enumerate(bar, start=1):
            if epoch == first_epoch and step_in_epoch <= skip_steps:
                continue  # replayed only to advance the shuffle and augmentation RNG exactly
            global_count = len(labels)
            inputs, labels = distributed.shard(inputs.to(device), labels.to(device), group)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                if (
                    group.distributed
                ):  # this shard's share of the global mean (DDP averages over ranks)
                    loss = (
                        F.cross_entropy(
                            network(inputs),
                            labels,
                            reduction="sum",
                            label_smoothing=config.label_smoothing,
                        )
                        * group.world_size
                        / global_count
                    )
                else:
                    loss = F.cross_entropy(
                        network(inputs), labels, label_smoothing=config.label_smoothing
                    )
            (scaler.scale(loss) if scaler else loss).backward()
            sparsifier.step(scaler)
            lr_schedule.step()
            loss_sum += loss.detach().float().cpu()
            if config.checkpoint_every and sparsifier.step_count % config.checkpoint_every == 0:
                if torch.isfinite(loss_sum) and all_finite(
                    model
                ):  # never overwrite a good checkpoint with NaNs
                    checkpoint(epoch, step_in_epoch, epoch_shuffle_state, loss_sum)
        train_loss = float(loss_sum) / steps_per_epoch
        if not (math.isfinite(train_loss) and all_finite(model)):
            kept = run is not None and (run.path / CHECKPOINT).exists()
            where = f"; the last good checkpoint is kept in {run.path}" if kept else ""
            raise TrainingDiverged(
                f"the training loss became {train_loss} in epoch {epoch}{where}; lower --lr (or drop --amp) and start again."
            )
        if sparsifier.update_interval is None:
            sparsifier.update_masks()
        validation_accuracy, validation_loss = evaluate(network, splits.validation, device)
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
        checkpoint(epoch + 1, 0, shuffle.get_state(), torch.zeros(()))
        if progress:
            density = sparsifier.nonzero_count() / sum(m.numel() for m in sparsifier.masks.values())
            tqdm.write(
                f"epoch {epoch:3d}  loss {train_loss:.4f}  val acc {validation_accuracy:6.2f} %  "
                f"density {density:.4f}  prune rate {record['prune_rate']:.3f}  {record['seconds']:.1f} s"
            )

    test_accuracy, test_loss = evaluate(network, splits.test, device)
    if validation_accuracy is None:  # resumed from the final checkpoint: no epoch ran here
        validation_accuracy = evaluate(network, splits.validation, device)[0]
    summary = {
        "model": config.model,
        "dataset": config.dataset,
        "method": config.method,
        "density": sparsifier.density,
        "seed": config.seed,
        "epochs": config.epochs,
        "test_accuracy": test_accuracy,
        "test_error": 100.0 - test_accuracy,
        "test_loss": test_loss,
        "validation_accuracy": validation_accuracy,
        "nonzero": sparsifier.nonzero_count(),
        "target_nonzero": sparsifier.target_nonzero_count(),
        "layer_density": sparsifier.layer_densities(),
        "mask_updates": sparsifier.update_count,
        "seconds": time.perf_counter() - started,
        "processes": group.world_size,
    }
    if run:
        run.write_json(RunFolder.SUMMARY, summary)
        plot_run(run.path)
    return summary
