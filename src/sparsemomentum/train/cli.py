"""``sparsemomentum`` command line. Flags are generated from :class:`TrainConfig`.

A user mistake (:class:`UserError`) prints one sentence and exits with status 2, never a
traceback; the library below this module knows nothing about argparse.
"""
from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING
from typing import Sequence

from ..errors import UserError
from .config import TrainConfig


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for spec in TrainConfig.field_specs():
        flag = "--" + spec.name.replace("_", "-")
        kind = hints[spec.name]
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        help_text = f"{spec.metadata['help']} (default: {default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif kind == list[str]:
            parser.add_argument(flag, nargs="*", default=default, metavar="PATTERN", help=help_text)
        else:
            base = next((t for t in (int, float, str) if kind is t or t in typing.get_args(kind)), str)
            parser.add_argument(flag, type=base, default=default, help=help_text)
    parser.add_argument("--dense", action="store_const", const="dense", dest="method",
                        help="train the dense baseline (same as --method dense)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsemomentum",
        description="Train sparse neural networks from scratch with sparse momentum.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train", help="train one model and write a run folder",
        description="Train one model; defaults are the paper's MNIST recipe.",
    )
    _add_config_flags(train_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = vars(build_parser().parse_args(argv))
    command = arguments.pop("command")
    try:
        if command == "train":
            from .loop import train

            summary = train(TrainConfig(**arguments))
            print(
                f"test accuracy {summary['test_accuracy']:.2f} % (error {summary['test_error']:.2f} %), "
                f"{summary['nonzero']} of target {summary['target_nonzero']} non-zeros, {summary['seconds']:.1f} s"
            )
    except UserError as error:
        print(f"sparsemomentum: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsemomentum: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
