"""Sparse training in Hugging Face's ``Trainer``:

    from sparsemomentum.integrations.transformers import SparseTrainingCallback
    callback = SparseTrainingCallback(method="sparse-momentum", density=0.1, update_interval=100)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()

The callback builds the sparsifier when training begins (from the Trainer's model and
optimizer; the run's length from ``state.max_steps``, the epoch's from the dataloader and
gradient accumulation), re-masks after every optimizer step the Trainer takes
(``on_optimizer_step``: after gradient accumulation and clipping), updates masks every
``update_interval`` optimizer steps or at the end of each epoch, adds ``density`` and
``nonzero`` to the Trainer's logs, and writes its state into every Trainer checkpoint
(``sparsemomentum.pt`` beside the model), from which ``resume_from_checkpoint`` restores it.
GPT-2's ``Conv1D`` layers count as Linear ones. ``callback.sparsifier`` is the sparsifier.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.pytorch_utils import Conv1D

from ..core.sparsifier import Sparsifier
from ..errors import UserError
from .common import build, load_state, restore, save_state, weights_of


class SparseTrainingCallback(TrainerCallback):
    def __init__(self, method: str = "sparse-momentum", density: float = 0.05, **options: Any):
        self.method, self.density, self.options = method, density, options
        self.sparsifier: Sparsifier | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        saved = None
        if state.global_step > 0:  # resumed: the checkpoint the Trainer resumed from
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            saved = load_state(folder)
            if saved is None:
                raise UserError(
                    f"{folder} holds no sparsifier state ({folder / 'sparsemomentum.pt'}); "
                    "resume from a checkpoint written with the SparseTrainingCallback."
                )
        weights = weights_of(model) if saved is not None else None
        self.sparsifier = build(
            self.method, self.density, self.options, model, optimizer, state.max_steps,
            _steps_per_epoch(args, kwargs.get("train_dataloader")), extra_types=(Conv1D,),
        )  # fmt: skip
        if saved is not None:
            restore(self.sparsifier, saved, weights)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.sparsifier.optimizer_stepped()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.sparsifier.schedule.epoch_wise:
            self.sparsifier.update_masks()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.sparsifier is None or logs is None:
            return
        counts = {
            "nonzero": self.sparsifier.nonzero_count(),
            "density": self.sparsifier.overall_density(),
        }
        logs.update(counts)
        if state.log_history:
            state.log_history[-1].update(counts)

    def on_save(self, args, state, control, **kwargs):
        save_state(self.sparsifier, Path(args.output_dir) / f"checkpoint-{state.global_step}")


def _steps_per_epoch(args, dataloader) -> int | None:
    try:
        return math.ceil(len(dataloader) / args.gradient_accumulation_steps)
    except TypeError:  # an iterable dataset: no length
        return None
