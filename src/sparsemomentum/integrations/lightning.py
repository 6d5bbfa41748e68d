"""Sparse training in ``lightning.pytorch.Trainer``:

    from sparsemomentum.integrations.lightning import SparseTrainingCallback
    trainer = lightning.pytorch.Trainer(callbacks=[SparseTrainingCallback(density=0.05)])

The callback builds the sparsifier when fitting starts (the LightningModule and its first
optimizer; the run's length from ``trainer.estimated_stepping_batches``), re-masks after
every optimizer step (seen as a new ``trainer.global_step`` at the end of a batch, so that
gradient accumulation and clipping are the Trainer's own), updates masks every
``update_interval`` optimizer steps or at the end of each training epoch, logs ``density``,
and keeps its state in Lightning's checkpoints (``Callback.state_dict``). Under the DDP
strategy every process draws the same masks from the same seed and updates them from the
same all-reduced gradients; after every update the processes check that their masks agree.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

from ..core.sparsifier import Sparsifier
from ..train.distributed import ProcessGroup, check_masks_agree
from .common import build, restore, weights_of


class SparseTrainingCallback(Callback):
    def __init__(self, method: str = "sparse-momentum", density: float = 0.05, **options: Any):
        self.method, self.density, self.options = method, density, options
        self.sparsifier: Sparsifier | None = None
        self._steps_seen = 0
        self._pending: dict[str, Any] | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        total = int(trainer.estimated_stepping_batches)
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        weights = weights_of(pl_module) if self._pending else None  # resumed: restored weights
        self.sparsifier = build(
            self.method, self.density, self.options, pl_module, trainer.optimizers[0], total,
            total // epochs if epochs else None, mask_check=_check_across_processes,
        )  # fmt: skip
        if self._pending:
            restore(self.sparsifier, self._pending["sparsifier"], weights)
            self._steps_seen = self._pending["steps_seen"]
            self._pending = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self._steps_seen:  # the Trainer took an optimizer step
            self._steps_seen = trainer.global_step
            self.sparsifier.optimizer_stepped()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.sparsifier.schedule.epoch_wise:
            self.sparsifier.update_masks()
        density = self.sparsifier.overall_density()
        pl_module.log("density", density, sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        if self.sparsifier is None:
            return {}
        return {"sparsifier": self.sparsifier.state_dict(), "steps_seen": self._steps_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.sparsifier is None:  # restored before fitting started: applied then
            self._pending = state
            return
        self.sparsifier.load_state_dict(state["sparsifier"])
        self._steps_seen = state["steps_seen"]
        self._pending = None


def _check_across_processes(masks) -> None:
    """Stop the run if this process's masks differ from rank 0's (cheap checksums)."""
    if dist.is_available() and dist.is_initialized():
        group = ProcessGroup(dist.get_rank(), dist.get_world_size())
        check_masks_agree(masks, group)
