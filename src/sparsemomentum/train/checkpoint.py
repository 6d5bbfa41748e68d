"""What a checkpoint of a training holds, and how a resumed training takes it back.

A checkpoint is everything needed to continue bit-identically: model, optimizer,
sparsifier (masks, schedule, backend state), learning-rate schedule, gradient scaler, the
random generators, and the position (the run goes on at step ``step_in_epoch`` + 1 of
``epoch``, whose batch order comes from ``epoch_shuffle_state``). Writing and reading the
file safely is ``runs.checkpoint``'s business.
"""

from __future__ import annotations

from typing import Any

import torch

from ..runs import save_checkpoint
from .state import Position, Training


def capture(
    training: Training,
    epoch: int,
    step_in_epoch: int,
    epoch_shuffle_state: torch.Tensor,
    loss_sum: torch.Tensor,
) -> dict[str, Any]:
    cuda = training.device.type == "cuda"
    return {
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "loss_sum": loss_sum,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "sparsifier": training.sparsifier.state_dict(),
        "lr_schedule": training.lr_schedule.state_dict(),
        "scaler": training.scaler.state_dict() if training.scaler else {},
        "epoch_shuffle_state": epoch_shuffle_state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if cuda else [],
        "num_classes": training.splits.num_classes,
    }


def save(
    training: Training,
    epoch: int,
    step_in_epoch: int,
    epoch_shuffle_state: torch.Tensor,
    loss_sum: torch.Tensor,
) -> None:
    """Write a checkpoint into the run folder (rank 0 only; nothing without a folder)."""
    if training.folder is not None:
        state = capture(training, epoch, step_in_epoch, epoch_shuffle_state, loss_sum)
        save_checkpoint(training.folder.path, state)


def restore(training: Training, state: dict[str, Any]) -> Position:
    """Load a checkpoint's ``state`` into ``training``; where to go on."""
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.sparsifier.load_state_dict(state["sparsifier"])
    training.lr_schedule.load_state_dict(state["lr_schedule"])
    if training.scaler:
        training.scaler.load_state_dict(state["scaler"])
    training.shuffle.set_state(state["epoch_shuffle_state"])
    torch.set_rng_state(state["torch_rng"])
    if training.device.type == "cuda" and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if training.folder:
        training.folder.keep_metrics_before(state["epoch"])
    return Position(state["epoch"], state["step_in_epoch"], state["loss_sum"])
