"""The training loop, to be read top to bottom.

    config -> data -> model -> optimizer -> sparsifier       prepare()
    new run: config.json / resumed: state from checkpoint     start() / checkpoint.restore()
    epochs: steps, mask update, validation, metrics, checkpoint   train_epoch()
    test -> summary.json, plots                               finish()

Everything the run decides is in the config; everything it learns goes to the run folder.
Under torchrun every rank runs this same code on its shard of each global batch; only
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
from ..core.initialisation import sparse_kaiming_
from ..core.sparsifier import Sparsifier
from ..errors import UserError
from ..runs import CHECKPOINT, RunFolder, load_checkpoint, read_summary
from . import checkpoint, distributed
from .config import TrainConfig
from .state import Position, Training
from .threads import idle_cores


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) one training and return its summary (also written to the run folder)."""
    saved = None
    if config.resume:
        config, saved = resume_point(config)
        if saved is None:  # finished: nothing to do, nothing to change
            return finished_summary(config, progress)
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    group = distributed.setup(device)
    try:
        training = prepare(config, group, progress and group.is_main)
        position = checkpoint.restore(training, saved) if saved else start(training)
        started = time.perf_counter()
        record = None
        for epoch in range(position.epoch, training.epochs + 1):
            record = train_epoch(training, epoch, position)
            position = Position(epoch + 1)
        return finish(training, record, started)
    finally:
        distributed.teardown(group)


def resume_point(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's own config and its newest intact checkpoint (None: the run has finished).

    Both are read before any data is loaded, so a folder that cannot be resumed says so at
    once. Only the settings that cannot change results may differ from the run's own.
    """
    resumed = TrainConfig.from_run(
        config.resume,
        data_dir=config.data_dir,
        download=config.download,
        threads=config.threads,
        device=config.device,
    )
    if (Path(config.resume) / RunFolder.SUMMARY).exists():
        return resumed, None
    return resumed, load_checkpoint(Path(config.resume))


def finished_summary(config: TrainConfig, progress: bool) -> dict[str, Any]:
    summary = read_summary(Path(config.resume))
    if progress:
        tqdm.write(f"the run in {config.resume} has finished; nothing to resume, nothing changed.")
    return summary


def prepare(config: TrainConfig, group: distributed.ProcessGroup, progress: bool) -> Training:
    """Data, model, optimizer, sparsifier and schedules, all from the config."""
    folder = None
    if config.out and group.is_main:
        folder = RunFolder(config.out, config.overwrite, bool(config.resume), config.tensorboard)
    torch.manual_seed(config.seed)
    splits = data.load_dataset(config.dataset, data.data_root(config.data_dir), config.download)
    model = models.create_model(config.model, num_classes=splits.num_classes).to(group.device)
    optimizer = config.build_optimizer(model)
    steps_per_epoch = data.batch_count(splits.train, config.batch_size)
    total_steps = config.total_steps(steps_per_epoch)
    sparsifier = build_sparsifier(config, model, optimizer, steps_per_epoch, group)
    if config.init == "sparse-kaiming":  # from the seeded generator: every process draws alike
        sparse_kaiming_(sparsifier)
    device = group.device
    network = model
    if group.distributed:
        device_ids = [device.index] if device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=device_ids)
    return Training(
        config=config,
        group=group,
        progress=progress,
        folder=folder,
        splits=splits,
        model=model,
        network=network,
        optimizer=optimizer,
        sparsifier=sparsifier,
        lr_schedule=build_lr_schedule(config, optimizer, steps_per_epoch, total_steps),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        epochs=config.run_epochs(steps_per_epoch),
        shuffle=torch.Generator().manual_seed(config.seed),
        scaler=torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None,
        autocast=_autocast(config.amp, device),
    )


def build_sparsifier(
    config: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    group: distributed.ProcessGroup = distributed.ProcessGroup(),
) -> Sparsifier:
    """The run's method on ``model``; told the epoch length, so that the sparse backend knows
    when each epoch-wise update comes from the first epoch on."""
    options = config.sparsifier_options(config.total_steps(steps_per_epoch), steps_per_epoch)
    if group.distributed:
        options["mask_check"] = lambda masks: distributed.check_masks_agree(masks, group)
    return algorithms.create_sparsifier(config.method, model, optimizer, **options)


def build_lr_schedule(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int
):
    """Stepped every iteration: warm-up, then decay every ``lr_decay_every`` steps (MNIST/CIFAR
    recipe), at ``lr_milestones`` epochs (ImageNet recipe), or on a cosine to a tenth of the
    learning rate at the end of the run (language models)."""
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    milestones = [epoch * steps_per_epoch for epoch in config.lr_milestones]

    def decay(step: int) -> float:
        if config.lr_schedule == "cosine":
            progress = min(
                1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            )
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))
        decays = sum(step >= m for m in milestones) if milestones else step // config.lr_decay_every
        return config.lr_decay_factor**decays

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        return warm * decay(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(amp: bool, device: torch.device):
    """bfloat16 on the CPU (no scaler needed), float16 on CUDA."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(
        device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16
    )


def start(training: Training) -> Position:
    """A new run: its config (with every setting the method resolved) goes to config.json."""
    if training.folder:
        resolved = algorithms.resolved_options(training.sparsifier)
        training.folder.write_json(
            RunFolder.CONFIG, {**training.config.to_dict(), "resolved": resolved}
        )
    if training.progress:
        tqdm.write(training.sparsifier.summary())
    return Position()


def train_epoch(training: Training, epoch: int, position: Position) -> dict[str, Any]:
    """One epoch from ``position``: steps, mask update, validation, metrics, checkpoint.

    Returns the epoch's record (its line of metrics.jsonl).
    """
    sparsifier = training.sparsifier
    if training.config.threads is None:  # the cores other processes leave idle, every epoch
        torch.set_num_threads(idle_cores() or torch.get_num_threads())
    started = time.perf_counter()
    train_loss = run_steps(training, epoch, position)
    _refuse_divergence(training, train_loss, epoch)
    if sparsifier.schedule.epoch_wise:
        sparsifier.update_masks()
    record = {"epoch": epoch, "train_loss": train_loss, **validate(training)}
    record.update(
        prune_rate=sparsifier.current_prune_rate(),
        lr=training.optimizer.param_groups[0]["lr"],
        nonzero=sparsifier.nonzero_count(),
        layer_density=sparsifier.layer_densities(),
        seconds=time.perf_counter() - started,
        threads=torch.get_num_threads(),
    )
    if training.folder:
        training.folder.append_metrics(record)
    checkpoint.save(training, epoch + 1, 0, training.shuffle.get_state(), torch.zeros(()))
    if training.progress:
        _print_epoch(record, sparsifier.overall_density())
    return record


def run_steps(training: Training, epoch: int, position: Position) -> float:
    """The optimizer steps of epoch ``epoch`` from ``position``; their mean training loss.

    The last epoch of a run of ``--max-steps`` stops at the run's last step.
    """
    config = training.config
    steps = min(
        training.steps_per_epoch, training.total_steps - (epoch - 1) * training.steps_per_epoch
    )
    epoch_shuffle_state = training.shuffle.get_state()
    training.network.train()
    loss_sum = position.loss_sum
    batches = training.splits.train.batches(
        config.batch_size, shuffle=True, generator=training.shuffle
    )
    bar = tqdm(batches, total=steps, desc=f"epoch {epoch}/{training.epochs}", leave=False,
               disable=None if training.progress else True)  # fmt: skip
    for step_in_epoch, (inputs, labels) in enumerate(bar, start=1):
        if step_in_epoch > steps:
            break
        if step_in_epoch <= position.skip_steps:
            continue  # replayed only to advance the shuffle and augmentation RNG exactly
        loss_sum += train_step(training, inputs, labels)
        if (
            config.checkpoint_every
            and training.sparsifier.step_count % config.checkpoint_every == 0
        ):
            if torch.isfinite(loss_sum) and all_finite(training.model):  # keep good ones only
                checkpoint.save(training, epoch, step_in_epoch, epoch_shuffle_state, loss_sum)
    return float(loss_sum) / steps


def validate(training: Training, split: str = "validation") -> dict[str, float]:
    """Accuracy and loss on a split; for sequence data the loss in bits per character too."""
    accuracy, loss = evaluate(training.network, getattr(training.splits, split), training.device)
    measured = {f"{split}_accuracy": accuracy, f"{split}_loss": loss}
    if training.splits.sequence:
        measured[f"{split}_bpc"] = loss / math.log(2)
    return measured


def train_step(training: Training, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One optimizer step on a global batch (this rank's shard of it); returns the loss."""
    config, group = training.config, training.group
    global_count = labels.numel()  # samples, or tokens of sequence data
    inputs, labels = distributed.shard(inputs.to(group.device), labels.to(group.device), group)
    training.optimizer.zero_grad(set_to_none=True)
    with training.autocast:
        logits = training.network(inputs)
        if group.distributed:  # this shard's share of the global mean (DDP averages over ranks)
            loss = token_loss(logits, labels, reduction="sum",
                              label_smoothing=config.label_smoothing)  # fmt: skip
            loss = loss * group.world_size / global_count
        else:
            loss = token_loss(logits, labels, label_smoothing=config.label_smoothing)
    scaler = training.scaler
    (scaler.scale(loss) if scaler else loss).backward()
    training.sparsifier.step(scaler)
    training.lr_schedule.step()
    return loss.detach().float().cpu()


def token_loss(logits: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
    """Cross-entropy per sample, or per position of sequence data (logits [B, T, classes])."""
    if logits.dim() > 2:
        logits, labels = logits.flatten(0, -2), labels.flatten()
    return F.cross_entropy(logits, labels, **options)


def all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _refuse_divergence(training: Training, train_loss: float, epoch: int) -> None:
    if math.isfinite(train_loss) and all_finite(training.model):
        return
    reason = f"the training loss became {train_loss} in epoch {epoch}"
    folder = training.folder
    if folder is not None:
        folder.write_divergence(reason, epoch)
    kept = folder is not None and (folder.path / CHECKPOINT).exists()
    where = f"; the last good checkpoint is kept in {folder.path}" if kept else ""
    raise TrainingDiverged(f"{reason}{where}; lower --lr (or drop --amp) and start again.")


def _print_epoch(record: dict[str, Any], density: float) -> None:
    if "validation_bpc" in record:
        score = f"val {record['validation_bpc']:.3f} bits/char"
    else:
        score = f"val acc {record['validation_accuracy']:6.2f} %"
    tqdm.write(
        f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  "
        f"{score}  density {density:.4f}  "
        f"prune rate {record['prune_rate']:.3f}  {record['seconds']:.1f} s, "
        f"{record['threads']} thread{'s' if record['threads'] > 1 else ''}"
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, split: data.Split, device: torch.device, batch_size: int = 1000
) -> tuple[float, float]:
    """(accuracy in %, mean loss in nats) of ``model`` on a split, per sample or per position
    of sequence data."""
    model.eval()
    correct, loss_sum, count = 0, 0.0, 0
    for inputs, labels in split.batches(batch_size):
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(inputs).float()
        loss_sum += float(token_loss(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        count += labels.numel()
    return 100.0 * correct / count, loss_sum / count


def finish(training: Training, record: dict[str, Any] | None, started: float) -> dict[str, Any]:
    """Test once, write summary.json and the plots; ``record``: the last epoch's (None when
    resumed from the final checkpoint); ``started``: when the first epoch here began."""
    config, sparsifier = training.config, training.sparsifier
    tested = validate(training, "test")
    validated = record or validate(training)
    summary = {
        "model": config.model,
        "dataset": config.dataset,
        "method": config.method,
        "density": sparsifier.density,
        "seed": config.seed,
        "epochs": config.epochs,
        **tested,
        "test_error": 100.0 - tested["test_accuracy"],
        **{key: value for key, value in validated.items() if key.startswith("validation_")},
        "nonzero": sparsifier.nonzero_count(),
        "target_nonzero": sparsifier.target_nonzero_count(),
        "layer_density": sparsifier.layer_densities(),
        "mask_updates": sparsifier.update_count,
        "parameters": sum(p.numel() for p in training.model.parameters()),
        "sparse_weights": sparsifier.sparse_size,
        "sparse_layers": len(sparsifier.weights),
        "steps": training.total_steps,
        "seconds": time.perf_counter() - started,
        "processes": training.group.world_size,
    }
    if training.folder:
        training.folder.write_summary(summary)
        training.folder.close()
        plot_run(training.folder.path)
    return summary
