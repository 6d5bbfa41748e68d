"""One resolved configuration per run: the CLI builds it, the loop reads it, config.json saves it.

Run settings are the fields of :class:`TrainConfig`, each with its command-line help in its
metadata. The method's own options (prune rate, growth, ...) are not repeated here: they
are the fields of the method classes, collected by ``algorithms.method_options()``, and a
run keeps the ones it sets in ``method_options``. Saved and read back, both kinds sit side
by side in one flat mapping (config.json, experiment files).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..algorithms import METHODS, create_sparsifier, method_options
from ..core.sparsifier import Sparsifier
from ..data import dataset_inputs, list_datasets
from ..errors import UserError, check_choice, check_interval
from ..models import list_models, model_inputs


def option(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# The paper's recipes (docs/algorithm.md, "The paper's recipes"). A preset sets defaults; flags
# given on the command line still win.
_SGD_RECIPE = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {
        **_SGD_RECIPE, "dataset": "mnist", "model": "lenet300-100", "epochs": 100,
        "batch_size": 100, "lr_decay_every": 25000, "density": 0.05,
    },
    "cifar10": {
        **_SGD_RECIPE, "dataset": "cifar10", "model": "wrn-16-8", "epochs": 250,
        "batch_size": 128, "lr_decay_every": 25000, "density": 0.05,
    },
    "imagenet": {
        **_SGD_RECIPE, "dataset": "imagenet", "model": "resnet50", "epochs": 100,
        "batch_size": 256, "nesterov": False, "weight_decay": 1e-4, "lr_milestones": [30, 60, 90],
        "warmup_epochs": 5, "label_smoothing": 0.1, "prune_rate": 0.2, "density": 0.1,
    },
}  # fmt: skip
PRESETS["cifar100"] = {**PRESETS["cifar10"], "dataset": "cifar100"}
# Character-level language modelling, nanoGPT's CPU recipe: AdamW (whose first moment is the
# momentum sparse momentum reads), 100 warm-up steps (0.4 epochs of 250), cosine decay over
# 2,000 steps, batch 12 x 64 characters; masks updated every 100 steps.
PRESETS["shakespeare-char"] = {
    "dataset": "shakespeare-char", "model": "gpt-char", "optimizer": "adamw", "lr": 1e-3,
    "momentum": 0.9, "weight_decay": 0.1, "batch_size": 12, "max_steps": 2000,
    "lr_schedule": "cosine", "warmup_epochs": 0.4, "density": 0.2, "update_interval": 100,
    "nesterov": False,
}  # fmt: skip
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("step", "cosine")
INITS = ("model", "sparse-kaiming")


@dataclass
class TrainConfig:
    """Defaults are the paper's MNIST recipe (SGD 0.1, Nesterov 0.9, wd 5e-4, batch 100)."""

    model: str = option("lenet300-100", "registered model name, e.g. lenet300-100, lenet5-caffe")
    dataset: str = option(
        "mnist", "data set: mnist, fashion-mnist, cifar10, cifar100, imagenet or shakespeare-char"
    )
    method: str = option(
        "sparse-momentum",
        "training method: sparse-momentum, set, dsr, rigl, snip, gmp, static or dense",
    )
    density: float | None = option(
        None, "fraction of non-zero weights over all sparse layers, in (0, 1] (default: the "
        "method's, 0.05; dense: 1)",
    )  # fmt: skip
    epochs: int = option(100, "training epochs")
    max_steps: int | None = option(
        None, "train this many optimizer steps instead (the last epoch cut short)"
    )
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
    lr_schedule: str = option(
        "step",
        "step (x --lr-decay-factor every --lr-decay-every steps or at --lr-milestones) or "
        "cosine (down to a tenth of --lr over the run)",
    )
    warmup_epochs: float = option(0.0, "linear learning-rate warm-up over this many epochs")
    init: str = option(
        "model",
        "initial weights: model (the network's own, as the paper) or sparse-kaiming (each "
        "sparse layer redrawn for the fan-in it keeps, so deep ReLU networks train at low "
        "density)",
    )
    label_smoothing: float = option(0.0, "label smoothing of the training loss")
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
        None,
        "folder holding the data sets' folders (mnist/, fashion-mnist/, cifar10/, cifar100/, "
        "imagenet/); default: $SPARSEMOMENTUM_DATA, else ~/.cache/sparsemomentum/data",
    )
    download: bool = option(True, "download missing data files from the public mirrors")
    out: str | None = option(None, "run folder for config.json, metrics.jsonl, summary.json, plots")
    overwrite: bool = option(False, "replace the contents of an existing run folder")
    tensorboard: bool = option(
        False, "also write the per-epoch metrics and layer densities as TensorBoard scalars"
    )
    threads: int | None = option(
        None, "CPU threads (default: the cores other processes leave idle, checked every epoch)"
    )
    device: str | None = option(None, "cpu or cuda (default: cuda when available)")
    amp: bool = option(
        False, "mixed precision: bfloat16 autocast on CPU, float16 with a gradient scaler on CUDA"
    )
    checkpoint_every: int | None = option(
        None, "also checkpoint every this many steps (always: every epoch)"
    )
    resume: str | None = option(
        None,
        "continue the run in this folder from its last checkpoint (other options come from its "
        "config.json)",
    )
    # The options of the method that this run sets; the method supplies the rest.
    method_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.density is None:  # an unknown method is refused by validate()
            self.density = _field_default(METHODS.get(self.method, Sparsifier), "density")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "TrainConfig":
        """A config from one flat mapping of run settings and method options (config.json,
        an experiment file, the command line); unset (None) method options are left out."""
        own = {f.name for f in fields(cls)} - {"method_options"}
        known = method_options()
        unknown = sorted(set(settings) - own - set(known))
        if unknown:
            raise UserError(
                f"unknown setting {unknown[0]!r}; use the options of `sparsemomentum train "
                "--help` (with underscores)."
            )
        chosen = {k: v for k, v in settings.items() if k in known and v is not None}
        return cls(**{k: v for k, v in settings.items() if k in own}, method_options=chosen)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping :meth:`from_settings` reads (what config.json holds)."""
        settings = asdict(self)
        chosen = settings.pop("method_options")
        return {**settings, **chosen}

    @classmethod
    def from_run(cls, run_dir: str, **overrides: Any) -> "TrainConfig":
        """The configuration a run folder was started with (for --resume), plus ``overrides``."""
        path = Path(run_dir) / "config.json"
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(
                f"{run_dir} is not a run folder (no config.json); pass the --out folder of an "
                "earlier run."
            ) from None
        except json.JSONDecodeError:
            raise UserError(
                f"{path} is damaged (not JSON); the run cannot be resumed, start it again."
            ) from None
        if not isinstance(saved, dict):
            raise UserError(f"{path} is damaged (not a mapping of settings); start the run again.")
        saved.pop("resolved", None)
        given = {k: v for k, v in overrides.items() if v is not None}  # unset flags keep the run's
        return cls.from_settings({**saved, **given, "resume": str(run_dir), "out": str(run_dir)})

    def validate(self) -> "TrainConfig":
        """Refuse values no run can use, with one sentence each, before anything is loaded."""
        self._check_numbers()
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("learning-rate schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("initialisation", self.init, INITS)
        check_choice("model", self.model, list_models())
        check_choice("data set", self.dataset, list_datasets())
        self._check_model_takes_dataset()
        check_choice("method", self.method, METHODS)
        self._check_device()
        unknown_types = [
            t for t in self.layer_types if not isinstance(getattr(torch.nn, t, None), type)
        ]
        if unknown_types:
            raise UserError(
                f"unknown layer type {unknown_types[0]!r}; use torch.nn class names such as "
                "Linear or Conv2d."
            )
        self._check_method_options()
        return self

    def _check_numbers(self) -> None:
        for name, interval in (
            ("epochs", "[1, inf)"), ("batch_size", "[1, inf)"), ("lr", "(0, inf)"),
            ("weight_decay", "[0, inf)"), ("momentum", "[0, 1)"), ("label_smoothing", "[0, 1)"),
            ("lr_decay_every", "[1, inf)"), ("lr_decay_factor", "(0, 1]"),
            ("warmup_epochs", "[0, inf)"),
        ):  # fmt: skip
            check_interval(f"--{name.replace('_', '-')}", getattr(self, name), interval)
        for name in ("checkpoint_every", "threads", "max_steps"):
            if getattr(self, name) is not None:
                check_interval(f"--{name.replace('_', '-')}", getattr(self, name), "[1, inf)")
        for milestone in self.lr_milestones:
            check_interval("--lr-milestones", milestone, "[1, inf)", "they are epochs")

    def _check_model_takes_dataset(self) -> None:
        takes, gives = model_inputs(self.model), dataset_inputs(self.dataset)
        if takes and gives and gives not in takes:
            models = [name for name in list_models() if gives in model_inputs(name)]
            datasets = [name for name in list_datasets() if dataset_inputs(name) in takes]
            raise UserError(
                f"model {self.model!r} takes {' or '.join(takes)}, but data set "
                f"{self.dataset!r} gives {gives}; choose a model for it ("
                f"{', '.join(models) or 'none registered'}) or a data set for the model ("
                f"{', '.join(datasets) or 'none registered'})."
            )

    def _check_device(self) -> None:
        if self.device is None:
            return
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise UserError(f"unknown device {self.device!r}; use cpu, cuda or cuda:N.") from None
        if device.type not in ("cpu", "cuda"):
            raise UserError(f"unknown device {self.device!r}; use cpu, cuda or cuda:N.")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise UserError(
                f"--device {self.device} was asked for but {torch.cuda.device_count()} CUDA "
                "devices are available; use --device cpu or a lower index."
            )

    def _check_method_options(self) -> None:
        """Build the method once on a one-layer stand-in, so that every method option is checked
        by the code that uses it, before a run folder is made or data is loaded."""
        stand_in = torch.nn.Linear(4, 4)
        optimizer = self.build_optimizer(stand_in)
        with warnings.catch_warnings():  # about the stand-in, not the run
            warnings.simplefilter("ignore")
            create_sparsifier(
                self.method, stand_in, optimizer, **self.sparsifier_options(total_steps=self.epochs)
            )

    def total_steps(self, steps_per_epoch: int) -> int:
        """The optimizer steps of the whole run: --max-steps, else every step of every epoch."""
        return self.max_steps or self.epochs * steps_per_epoch

    def run_epochs(self, steps_per_epoch: int) -> int:
        """The epochs the run trains (the last one cut short when --max-steps says so)."""
        return -(-self.max_steps // steps_per_epoch) if self.max_steps else self.epochs

    def sparsifier_options(self, total_steps: int, steps_per_epoch: int | None = None) -> dict:
        """Everything the method is built with: this run's method options and run settings."""
        options = dict(
            self.method_options,
            density=self.density,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            seed=self.seed,
            include=tuple(self.include),
            exclude=tuple(self.exclude),
        )
        if self.layer_types:
            options["layer_types"] = tuple(getattr(torch.nn, name) for name in self.layer_types)
        return options

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
        betas = (self.momentum, 0.999)
        return adam(model.parameters(), lr=self.lr, betas=betas, weight_decay=self.weight_decay)


def _field_default(cls: type, name: str) -> Any:
    return next(f.default for f in fields(cls) if f.name == name)
