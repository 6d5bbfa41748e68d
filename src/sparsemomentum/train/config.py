"""One resolved configuration per run: the CLI builds it, the loop reads it, config.json saves it.

Each field's metadata carries its command-line help, so the parser is generated from this
class and no option is described twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from ..algorithms import METHODS, create_sparsifier
from ..data import list_datasets
from ..errors import UserError
from ..models import list_models


def option(default: Any, help: str, **extra: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


# The paper's recipes (docs: "Training recipes of the paper"). A preset sets defaults; flags
# given on the command line still win.
PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {
        "dataset": "mnist",
        "model": "lenet300-100",
        "epochs": 100,
        "batch_size": 100,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "lr_decay_every": 25000,
        "density": 0.05,
    },
    "cifar10": {
        "dataset": "cifar10",
        "model": "wrn-16-8",
        "epochs": 250,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "lr_decay_every": 25000,
        "density": 0.05,
    },
    "imagenet": {
        "dataset": "imagenet",
        "model": "resnet50",
        "epochs": 100,
        "batch_size": 256,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "lr_milestones": [30, 60, 90],
        "warmup_epochs": 5,
        "label_smoothing": 0.1,
        "prune_rate": 0.2,
        "density": 0.1,
    },
}
PRESETS["cifar100"] = {**PRESETS["cifar10"], "dataset": "cifar100"}

METHOD_OPTIONS = (
    "prune_rate",
    "prune_rate_schedule",
    "final_prune_rate",
    "distribution",
    "prune",
    "redistribution",
    "growth",
    "update_interval",
    "stop_fraction",
    "threshold",
    "tolerance",
    "start_fraction",
    "end_fraction",
    "backend",
    "momentum_window",
)


@dataclass
class TrainConfig:
    """Defaults are the paper's MNIST recipe (SGD 0.1, Nesterov 0.9, wd 5e-4, batch 100)."""

    model: str = option("lenet300-100", "registered model name, e.g. lenet300-100, lenet5-caffe")
    dataset: str = option("mnist", "data set: mnist, fashion-mnist, cifar10, cifar100 or imagenet")
    method: str = option(
        "sparse-momentum",
        "training method: sparse-momentum, set, dsr, rigl, snip, gmp, static or dense",
    )
    density: float = option(0.05, "fraction of non-zero weights over all sparse layers, in (0, 1]")
    epochs: int = option(100, "training epochs")
    batch_size: int = option(100, "mini-batch size")
    optimizer: str = option("sgd", "sgd, adam or adamw")
    lr: float = option(0.1, "learning rate")
    momentum: float = option(0.9, "SGD momentum (Adam: beta1)")
    nesterov: bool = option(True, "Nesterov momentum for SGD")
    weight_decay: float = option(5e-4, "weight decay")
    lr_decay_every: int = option(
        25000, "multiply the learning rate by --lr-decay-factor every this many steps"
    )
    lr_decay_factor: float = option(0.1, "learning-rate decay factor")
    lr_milestones: list[int] = option(
        [], "epochs at which to decay the learning rate instead of every --lr-decay-every steps"
    )
    warmup_epochs: int = option(0, "linear learning-rate warm-up over this many epochs")
    label_smoothing: float = option(0.0, "label smoothing of the training loss")
    # Method options: None means "the method's own default" (sparse momentum: the paper's).
    prune_rate: float | None = option(
        None, "initial fraction of each layer's weights replaced per update, in [0, 1) (SET: zeta)"
    )
    prune_rate_schedule: str | None = option(None, "cosine, linear or constant")
    final_prune_rate: float | None = option(
        None, "prune rate at the end of the schedule (cosine/linear)"
    )
    distribution: str | None = option(
        None, "initial density per layer: uniform, erdos_renyi or erk"
    )
    prune: str | None = option(None, "which active weights to drop: magnitude")
    redistribution: str | None = option(
        None, "regrowth per layer: momentum, magnitude, nonzero or none"
    )
    growth: str | None = option(None, "which missing weights to grow: momentum, random or gradient")
    update_interval: int | None = option(
        None, "update masks every this many steps (sparse momentum default: each epoch)"
    )
    stop_fraction: float | None = option(
        None, "no mask updates after this fraction of training (RigL: 0.75)"
    )
    threshold: float | None = option(None, "DSR: initial global magnitude threshold")
    tolerance: float | None = option(
        None, "DSR: allowed relative miss of the pruning target before the threshold adapts"
    )
    start_fraction: float | None = option(None, "GMP: fraction of training at which pruning starts")
    end_fraction: float | None = option(
        None, "GMP: fraction of training at which the target density is reached"
    )
    backend: str | None = option(
        None,
        "masked (dense weights times masks) or sparse (compiled sparse kernels for Linear and Conv2d layers)",
    )
    momentum_window: int | None = option(
        None,
        "sparse backend: steps before each update that compute dense weight gradients (default 50)",
    )
    include: list[str] = option(
        [], "only sparsify parameters whose name matches one of these patterns"
    )
    exclude: list[str] = option(
        [], "keep parameters whose name matches one of these patterns dense"
    )
    layer_types: list[str] = option(
        [], "module types to sparsify, e.g. Linear Conv2d (default: Linear, Conv1d, Conv2d, Conv3d)"
    )
    seed: int = option(0, "random seed (masks, initialisation, data order)")
    data_dir: str | None = option(
        None, "folder holding mnist/ and fashion-mnist/ (default: $SPARSEMOMENTUM_DATA)"
    )
    download: bool = option(True, "download missing data files from the public mirrors")
    out: str | None = option(
        None, "run folder for config.json, metrics.jsonl, summary.json and plots"
    )
    overwrite: bool = option(False, "replace the contents of an existing run folder")
    threads: int | None = option(None, "CPU threads for torch (default: torch's own choice)")
    device: str | None = option(None, "cpu or cuda (default: cuda when available)")
    amp: bool = option(
        False, "mixed precision: bfloat16 autocast on CPU, float16 with a gradient scaler on CUDA"
    )
    checkpoint_every: int | None = option(
        None, "also checkpoint every this many steps (always: every epoch)"
    )
    resume: str | None = option(
        None,
        "continue the run in this folder from its last checkpoint (other options come from its config.json)",
    )

    def validate(self) -> "TrainConfig":
        """Refuse values no run can use, with one sentence each, before anything is loaded."""
        if self.epochs <= 0:
            raise UserError(f"epochs must be a positive number, got {self.epochs}.")
        if self.batch_size <= 0:
            raise UserError(f"batch size must be a positive number, got {self.batch_size}.")
        if not 0.0 < self.density <= 1.0:
            raise UserError(
                f"density must be in (0, 1], got {self.density}; use e.g. 0.05 for 5 % non-zeros."
            )
        if self.prune_rate is not None and not 0.0 <= self.prune_rate < 1.0:
            raise UserError(
                f"prune rate must be in [0, 1), got {self.prune_rate}; the paper uses 0.5."
            )
        if self.lr <= 0:
            raise UserError(f"learning rate must be positive, got {self.lr}.")
        if self.weight_decay < 0:
            raise UserError(f"weight decay must be zero or positive, got {self.weight_decay}.")
        if not 0.0 <= self.momentum < 1.0:
            raise UserError(f"momentum must be in [0, 1), got {self.momentum}; the paper uses 0.9.")
        if self.warmup_epochs < 0 or any(m <= 0 for m in self.lr_milestones):
            raise UserError(
                "--warmup-epochs and --lr-milestones must be positive numbers of epochs."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"label smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.lr_decay_every <= 0:
            raise UserError(
                f"--lr-decay-every must be a positive number of steps, got {self.lr_decay_every}."
            )
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise UserError(
                f"unknown optimizer {self.optimizer!r}; choose one of: adam, adamw, sgd."
            )
        for kind, name, known in (
            ("model", self.model, list_models()),
            ("data set", self.dataset, list_datasets()),
            ("method", self.method, sorted(METHODS)),
        ):
            if name not in known:
                raise UserError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}.")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise UserError(
                f"--checkpoint-every must be a positive number of steps, got {self.checkpoint_every}."
            )
        if self.device is not None and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise UserError(f"unknown device {self.device!r}; use cpu or cuda.")
        if self.device is not None and self.device.startswith("cuda"):
            try:
                index = torch.device(self.device).index or 0
            except RuntimeError:
                raise UserError(
                    f"unknown device {self.device!r}; use cpu, cuda or cuda:N."
                ) from None
            if index >= torch.cuda.device_count():
                raise UserError(
                    f"--device {self.device} was asked for but {torch.cuda.device_count()} CUDA devices are available; "
                    "use --device cpu or a lower index."
                )
        unknown_types = [
            name for name in self.layer_types if not isinstance(getattr(torch.nn, name, None), type)
        ]
        if unknown_types:
            raise UserError(
                f"unknown layer type {unknown_types[0]!r}; use torch.nn class names such as Linear or Conv2d."
            )
        if self.threads is not None and self.threads <= 0:
            raise UserError(f"threads must be a positive number, got {self.threads}.")
        self._check_method_options()
        return self

    def _check_method_options(self) -> None:
        """Build the method once on a one-layer stand-in, so that every method option is checked
        by the code that uses it, before a run folder is made or data is loaded."""
        stand_in = torch.nn.Linear(4, 4)
        create_sparsifier(
            self.method,
            stand_in,
            self.build_optimizer(stand_in),
            **self.method_options(),
            density=self.density,
            total_steps=self.epochs,
        )

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The run's optimizer over ``model``'s parameters (SGD by default, as the paper)."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                model.parameters(),
                lr=self.lr,
                momentum=self.momentum,
                nesterov=self.nesterov and self.momentum > 0,
                weight_decay=self.weight_decay,
            )
        adam = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return adam(
            model.parameters(),
            lr=self.lr,
            betas=(self.momentum, 0.999),
            weight_decay=self.weight_decay,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def method_options(self) -> dict[str, Any]:
        """The method options this run sets explicitly; the method supplies the rest."""
        return {
            name: getattr(self, name) for name in METHOD_OPTIONS if getattr(self, name) is not None
        }

    @classmethod
    def from_run(cls, run_dir: str, **overrides: Any) -> "TrainConfig":
        """The configuration a run folder was started with (for --resume), plus ``overrides``."""
        import json
        from pathlib import Path

        path = Path(run_dir) / "config.json"
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(
                f"{run_dir} is not a run folder (no config.json); pass the --out folder of an earlier run."
            ) from None
        except json.JSONDecodeError:
            raise UserError(
                f"{path} is damaged (not JSON); the run cannot be resumed, start it again."
            ) from None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in known}
        given = {
            k: v for k, v in overrides.items() if v is not None
        }  # unset flags keep the run's values
        return cls(**{**values, **given, "resume": str(run_dir), "out": str(run_dir)})
