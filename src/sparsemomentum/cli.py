"""``sparsemomentum`` command line. Flags are generated from :class:`TrainConfig`.

A user mistake (:class:`UserError`) prints one sentence and exits with status 2, never a
traceback; the library below this module knows nothing about argparse.
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, fields
from typing import Sequence

from .algorithms import METHODS, method_options
from .errors import UserError
from .train.config import PRESETS, TrainConfig


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help strings with %


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per run setting of :class:`TrainConfig`, with its help and default."""
    hints = typing.get_type_hints(TrainConfig)
    for spec in fields(TrainConfig):
        if spec.name == "method_options":
            continue
        flag = "--" + spec.name.replace("_", "-")
        kind = hints[spec.name]
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        help_text = _help(f"{spec.metadata['help']} (default: {default})")
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            metavar = "EPOCH" if item is int else "NAME"
            parser.add_argument(
                flag, nargs="*", type=item, default=default, metavar=metavar, help=help_text
            )
        else:
            base = next((t for t in (int, float, str) if kind is t or t in typing.get_args(kind)))
            parser.add_argument(flag, type=base, default=default, help=help_text)


def _add_method_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per option of the registered methods; unset flags leave the method's default."""
    group = parser.add_argument_group("method options (each method's own defaults apply)")
    for option in method_options().values():
        defaults = ", ".join(f"{method} {value}" for method, value in option.defaults.items())
        help_text = _help(f"{option.help} (default: {defaults})")
        flag = "--" + option.name.replace("_", "-")
        if option.kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(flag, type=option.kind, help=help_text)


DATA_DIR_HELP = (
    "folder holding the data sets' folders (mnist/, fashion-mnist/, cifar10/, cifar100/, "
    "imagenet/); default: $SPARSEMOMENTUM_DATA, else ~/.cache/sparsemomentum/data"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsemomentum",
        description="Train sparse neural networks from scratch with sparse momentum.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_command(commands)
    _add_sweep_command(commands)
    _add_report_command(commands)
    _add_export_command(commands)
    return parser


def _add_train_command(commands) -> None:
    train_parser = commands.add_parser(
        "train",
        help="train one model and write a run folder",
        description="Train one model; defaults are the paper's MNIST recipe.",
    )
    _add_config_flags(train_parser)
    _add_method_flags(train_parser)
    train_parser.add_argument(
        "--dense",
        action="store_const",
        const="dense",
        dest="method",
        help="train the dense baseline (same as --method dense)",
    )
    train_parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="the paper's recipe for a data set (model, epochs, batch, optimizer, schedule); "
        "flags given win",
    )


def _add_sweep_command(commands) -> None:
    sweep_parser = commands.add_parser(
        "sweep",
        help="train every run of an experiment file, skipping finished ones",
        description="Train the grid of runs an experiment file (TOML) describes; rerunning "
        "resumes where it stopped.",
    )
    sweep_parser.add_argument(
        "experiment", help="experiment file, e.g. experiments/mnist-lenet300.toml"
    )
    sweep_parser.add_argument(
        "--out", help="sweep folder (default: runs/<experiment file name without .toml>)"
    )
    sweep_parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    sweep_parser.add_argument(
        "--dry-run", action="store_true", help="list the runs still to do and stop"
    )
    sweep_parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="train only the runs with this setting, e.g. --only seed=0 --only density=0.05 "
        "(repeatable; several values of one key: any of them; 'variant' is the run's name)",
    )
    sweep_parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained in parallel processes, one thread each (default: 1)",
    )


def _add_report_command(commands) -> None:
    report_parser = commands.add_parser(
        "report",
        help="tables and figures over finished runs",
        description="Write report.md (test error per method and density beside the paper's) "
        "and PNG figures. A run that never learned (test loss still about ln(classes): a "
        "collapse, or a start it never left) is counted in its cell and listed, not averaged.",
    )
    report_parser.add_argument(
        "path", help="a run folder or a folder holding run folders, e.g. runs/mnist-lenet300"
    )
    report_parser.add_argument("--out", help="folder for report.md and the figures (default: PATH)")
    report_parser.add_argument(
        "--against",
        metavar="SETTING",
        help="also test error against this swept setting, with SE bars (e.g. prune_rate, "
        "momentum, parameters, sparse_layers)",
    )
    report_parser.add_argument(
        "--baseline",
        metavar="ROW",
        help="with --against: each row's difference to this row (e.g. the sparse-momentum row "
        "of an ablation)",
    )
    report_parser.add_argument(
        "--only",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only the runs with this setting, e.g. --only model=mlp-300x2 --only "
        "model=mlp-300x4 (repeatable; several values of one key: any of them)",
    )
    report_parser.add_argument(
        "--density",
        type=float,
        help="density of the layer-density and learning-curve figures (default: 0.05 or the "
        "nearest)",
    )


def _add_export_command(commands) -> None:
    export_parser = commands.add_parser(
        "export",
        help="write a run's trained model with its sparse weights stored compactly",
        description="Store every masked weight as CSR (values + int32 indices); load with "
        "sparsemomentum.load_exported(FILE), which reads either format.",
    )
    export_parser.add_argument("run_dir", help="a training run's folder")
    export_parser.add_argument(
        "--out", required=True, help="file to write, e.g. model.pt or model.safetensors"
    )
    export_parser.add_argument(
        "--format",
        dest="file_format",
        choices=("pt", "safetensors"),
        help="pt (torch.save) or safetensors (readable by other tools; docs/export.md); "
        "default: safetensors for a .safetensors file name, else pt",
    )


def _export(run_dir: str, out: str, file_format: str | None) -> None:
    from .export import export_run

    size, dense = export_run(run_dir, out, file_format)
    print(f"wrote {out}: {size:,} bytes, {size / dense:.1%} of the dense model's {dense:,} bytes")


def _sweep(
    experiment: str,
    out: str | None,
    data_dir: str | None,
    dry_run: bool,
    jobs: int,
    only: list[str],
) -> None:
    from .train.experiment import load_experiment
    from .train.sweep import run_sweep

    loaded = load_experiment(experiment, out, data_dir, only)
    if dry_run:
        print(loaded.plan())
        return
    trained = run_sweep(loaded, jobs)
    print(
        f"trained {trained} of {len(loaded.runs)} runs (the others were already finished"
        f"{' or left out by --only' if only else ''}); results in {loaded.out / 'results.csv'}"
    )


def _report(
    path: str,
    out: str | None,
    density: float | None,
    against: str | None,
    baseline: str | None,
    only: list[str],
) -> None:
    from .analysis.report import write_report

    print(f"wrote {write_report(path, out, density, against, baseline, only)}")


# What a resumed run may be given: where its data is and how it runs, not what it computes.
RESUME_FLAGS = ("resume", "data_dir", "download", "threads", "device")


def _parse(argv: Sequence[str] | None) -> dict:
    """Parse once to find a preset, then again with the preset as defaults: given flags win."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    if getattr(arguments, "preset", None):
        train_parser.set_defaults(**PRESETS[arguments.preset])
        arguments = parser.parse_args(argv)
        _drop_options_the_method_lacks(vars(arguments), PRESETS[arguments.preset])
    arguments = vars(arguments)
    if arguments["command"] == "train" and arguments["resume"]:
        _refuse_flags_on_resume(arguments, train_parser)
    arguments.pop("preset", None)
    return arguments


def _drop_options_the_method_lacks(arguments: dict, preset: dict) -> None:
    """A preset's method options (a prune rate, an update interval) apply to the methods that
    have them, and its density to sparse methods: ``--preset imagenet --dense`` trains the
    dense baseline."""
    method = METHODS.get(arguments["method"])
    if method is None:
        return  # refused later, by name
    own = {spec.name: spec.default for spec in fields(method)}
    for name in preset:
        if arguments.get(name) != preset[name]:
            continue  # given on the command line
        if name in method_options() and name not in own:
            arguments[name] = None
        elif name == "density" and own["density"] == 1.0:  # the dense baseline keeps all
            arguments[name] = None


def _refuse_flags_on_resume(arguments: dict, train_parser: argparse.ArgumentParser) -> None:
    """--resume continues with the run's own config.json; a flag that would change it is
    refused by name rather than ignored."""
    changed = [
        name
        for name, value in arguments.items()
        if name not in (*RESUME_FLAGS, "command") and value != train_parser.get_default(name)
    ]
    if changed:
        flags = ", ".join("--" + name.replace("_", "-") for name in changed)
        raise UserError(
            f"--resume continues a run with the settings in its "
            f"config.json, so {flags} cannot be given with it (only --data-dir, --download, "
            "--threads and --device can); to change them, start a new run with another --out."
        )


def _result_line(summary: dict) -> str:
    if "test_bpc" in summary:
        score = f"test loss {summary['test_bpc']:.3f} bits per character"
    else:
        score = (
            f"test accuracy {summary['test_accuracy']:.2f} % (error {summary['test_error']:.2f} %)"
        )
    return (
        f"{score}, {summary['nonzero']} of target {summary['target_nonzero']} non-zeros, "
        f"{summary['seconds']:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        arguments = _parse(argv)
        command = arguments.pop("command")
        if command == "train":
            from .train.loop import train

            summary = train(TrainConfig.from_settings(arguments))
            print(_result_line(summary))
        elif command == "sweep":
            _sweep(**arguments)
        elif command == "report":
            _report(**arguments)
        elif command == "export":
            _export(**arguments)
    except UserError as error:
        print(f"sparsemomentum: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsemomentum: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
