"""What one run holds while it trains, and where a run goes on (shared by the loop and
the checkpoint code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .. import data
from ..core.sparsifier import Sparsifier
from ..runs import RunFolder
from . import distributed
from .config import TrainConfig


@dataclass
class Training:
    """Everything one run holds while it trains."""

    config: TrainConfig
    group: distributed.ProcessGroup
    progress: bool
    folder: RunFolder | None
    splits: data.DataSplits
    model: torch.nn.Module
    network: torch.nn.Module  # the model, wrapped for several processes when there are
    optimizer: torch.optim.Optimizer
    sparsifier: Sparsifier
    lr_schedule: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    total_steps: int  # of the whole run
    epochs: int  # the run trains, the last one cut short when total_steps says so
    shuffle: torch.Generator
    scaler: torch.amp.GradScaler | None
    autocast: Any

    @property
    def device(self) -> torch.device:
        return self.group.device


@dataclass
class Position:
    """Where training goes on: step ``skip_steps`` + 1 of ``epoch``, with the loss summed so far."""

    epoch: int = 1
    skip_steps: int = 0
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
