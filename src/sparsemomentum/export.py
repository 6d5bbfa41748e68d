"""Compact export of a trained sparse model, and the loader that rebuilds it.

Each masked weight is stored as CSR (int32 row offsets and column indices, values) of the
weight viewed as [out_features, everything else], one entry per active mask position;
other tensors are stored dense. The loader checks every index before using it. The file
is a plain ``torch.save`` of tensors, strings and ints, loaded with ``weights_only=True``,
so opening an exported model never runs code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_file
from .errors import UserError
from .models import create_model
from .runs import load_checkpoint

FORMAT = "sparsemomentum-export-1"


def sparse_state(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The model's state with every masked weight in CSR form."""
    tensors: dict[str, Any] = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if name in masks:
            mask = masks[name].cpu().reshape(value.shape[0], -1)
            rows, columns = mask.nonzero(as_tuple=True)
            index_type = torch.int32 if mask.numel() < 2**31 else torch.int64
            row_counts = torch.bincount(rows, minlength=mask.shape[0])
            tensors[name] = {
                "shape": list(value.shape),
                "crow_indices": torch.cat(
                    [torch.zeros(1, dtype=torch.int64), row_counts.cumsum(0)]
                ).to(index_type),
                "col_indices": columns.to(index_type),
                "values": value.reshape(mask.shape)[rows, columns],
            }
        else:
            tensors[name] = value
    return tensors


def export_model(
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    model_name: str,
    num_classes: int,
    path: str | os.PathLike,
) -> int:
    """Write the export atomically; returns its size in bytes."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model": model_name,
        "num_classes": num_classes,
        "tensors": sparse_state(model, masks),
    }
    try:
        with atomic_file(path) as out:
            torch.save(payload, out)
    except OSError as error:
        raise UserError(
            f"cannot write {path} ({error.strerror}); choose a writable --out."
        ) from None
    return path.stat().st_size


def _dense_from_csr(name: str, stored: dict[str, Any], path: str | os.PathLike) -> torch.Tensor:
    """Rebuild a dense weight from its CSR parts, checking every index (the file may be damaged)."""
    shape = stored["shape"]
    rows_count, row_size = shape[0], int(torch.Size(shape[1:]).numel())
    offsets, columns, values = (
        stored["crow_indices"].long(),
        stored["col_indices"].long(),
        stored["values"],
    )
    valid = (
        offsets.numel() == rows_count + 1
        and int(offsets[0]) == 0
        and bool((offsets.diff() >= 0).all())
        and int(offsets[-1]) == columns.numel() == values.numel()
        and (columns.numel() == 0 or (int(columns.min()) >= 0 and int(columns.max()) < row_size))
    )
    if not valid:
        raise UserError(
            f"{path} is damaged: the sparse weight {name!r} has inconsistent indices; export it again."
        )
    rows = torch.repeat_interleave(torch.arange(rows_count), offsets.diff())
    dense = torch.zeros(rows_count, row_size, dtype=values.dtype)
    dense[rows, columns] = values
    return dense.reshape(shape)


def export_run(run_dir: str | os.PathLike, path: str | os.PathLike) -> tuple[int, int]:
    """Export the model of a run folder's last checkpoint; returns (export bytes, dense bytes)."""
    import io
    import json

    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise UserError(
            f"{run_dir} is not a run folder with a readable config.json; pass the --out folder of a training run."
        ) from None
    state = load_checkpoint(run_dir)
    model = create_model(config["model"], num_classes=state["num_classes"])
    model.load_state_dict(state["model"])
    size = export_model(
        model, state["sparsifier"]["masks"], config["model"], state["num_classes"], path
    )
    dense = io.BytesIO()
    torch.save(model.state_dict(), dense)
    return size, dense.getbuffer().nbytes


def load_exported(path: str | os.PathLike) -> nn.Module:
    """Rebuild the registered model from an export; its predictions equal the trained model's."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(
            f"no exported model at {path}; run 'sparsemomentum export RUN_DIR --out FILE' first."
        ) from None
    except Exception as error:
        raise UserError(
            f"{path} is not a readable sparsemomentum export ({type(error).__name__})."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a sparsemomentum export (format {FORMAT}).")
    model = create_model(payload["model"], num_classes=payload["num_classes"])
    state = {}
    for name, value in payload["tensors"].items():
        state[name] = _dense_from_csr(name, value, path) if isinstance(value, dict) else value
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UserError(
            f"{path} does not fit the registered model {payload['model']!r}; export it again."
        ) from None
    model.eval()
    return model
