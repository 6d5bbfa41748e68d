"""One resolved configuration per run: the CLI builds it, the loop reads it, config.json saves it.

Each field's metadata carries its command-line help, so the parser is generated from this
class and no option is described twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..algorithms import METHODS
from ..data import list_datasets
from ..errors import UserError
from ..models import list_models


def option(default: Any, help: str, **extra: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Defaults are the paper's MNIST recipe (SGD 0.1, Nesterov 0.9, wd 5e-4, batch 100)."""

    model: str = option("lenet300-100", "registered model name, e.g. lenet300-100, lenet5-caffe")
    dataset: str = option("mnist", "data set: mnist or fashion-mnist")
    method: str = option("sparse-momentum", "training method: sparse-momentum or dense")
    density: float = option(0.05, "fraction of non-zero weights over all sparse layers, in (0, 1]")
    epochs: int = option(100, "training epochs")
    batch_size: int = option(100, "mini-batch size")
    optimizer: str = option("sgd", "sgd, adam or adamw")
    lr: float = option(0.1, "learning rate")
    momentum: float = option(0.9, "SGD momentum (Adam: beta1)")
    nesterov: bool = option(True, "Nesterov momentum for SGD")
    weight_decay: float = option(5e-4, "weight decay")
    lr_decay_every: int = option(25000, "multiply the learning rate by --lr-decay-factor every this many steps")
    lr_decay_factor: float = option(0.1, "learning-rate decay factor")
    prune_rate: float = option(0.5, "initial fraction of each layer's weights replaced per update, in [0, 1)")
    prune_rate_schedule: str = option("cosine", "cosine, linear or constant")
    final_prune_rate: float = option(0.005, "prune rate at the end of training (cosine/linear)")
    distribution: str = option("uniform", "initial density per layer: uniform, erdos_renyi or erk")
    prune: str = option("magnitude", "which active weights to drop: magnitude")
    redistribution: str = option("momentum", "regrowth per layer: momentum, magnitude, nonzero or none")
    growth: str = option("momentum", "which missing weights to grow: momentum, random or gradient")
    update_interval: int | None = option(None, "update masks every this many steps (default: each epoch)")
    stop_fraction: float = option(1.0, "no mask updates after this fraction of training")
    include: list[str] = option([], "only sparsify parameters whose name matches one of these patterns")
    exclude: list[str] = option([], "keep parameters whose name matches one of these patterns dense")
    seed: int = option(0, "random seed (masks, initialisation, data order)")
    data_dir: str | None = option(None, "folder holding mnist/ and fashion-mnist/ (default: $SPARSEMOMENTUM_DATA)")
    download: bool = option(True, "download missing data files from the public mirrors")
    out: str | None = option(None, "run folder for config.json, metrics.jsonl, summary.json and plots")
    overwrite: bool = option(False, "replace the contents of an existing run folder")
    threads: int | None = option(None, "CPU threads for torch (default: torch's own choice)")

    def validate(self) -> "TrainConfig":
        """Refuse values no run can use, with one sentence each, before anything is loaded."""
        if self.epochs <= 0:
            raise UserError(f"epochs must be a positive number, got {self.epochs}.")
        if self.batch_size <= 0:
            raise UserError(f"batch size must be a positive number, got {self.batch_size}.")
        if not 0.0 < self.density <= 1.0:
            raise UserError(f"density must be in (0, 1], got {self.density}; use e.g. 0.05 for 5 % non-zeros.")
        if not 0.0 <= self.prune_rate < 1.0:
            raise UserError(f"prune rate must be in [0, 1), got {self.prune_rate}; the paper uses 0.5.")
        if self.lr <= 0:
            raise UserError(f"learning rate must be positive, got {self.lr}.")
        if self.lr_decay_every <= 0:
            raise UserError(f"--lr-decay-every must be a positive number of steps, got {self.lr_decay_every}.")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of: adam, adamw, sgd.")
        for kind, name, known in (("model", self.model, list_models()), ("data set", self.dataset, list_datasets()),
                                  ("method", self.method, sorted(METHODS))):
            if name not in known:
                raise UserError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}.")
        if self.threads is not None and self.threads <= 0:
            raise UserError(f"threads must be a positive number, got {self.threads}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_specs(cls):
        return fields(cls)
