"""Compact export of a trained sparse model, and the loader that rebuilds it.

Each masked weight is stored as CSR (int32 row offsets and column indices, values) of the
weight viewed as [out_features, everything else], one entry per active mask position;
other tensors are stored dense. The file is a plain ``torch.save`` of tensors, strings and
ints, loaded with ``weights_only=True``, so opening an exported model never runs code.

The loader trusts nothing in the file: the model is rebuilt from its registered name first,
and every stored field is checked against that model (names, shapes, dtypes, index ranges,
sorted and unique columns) before anything the size of a weight is allocated, so a damaged
or hostile file is one sentence, never a traceback or a terabyte allocation.

The same content can be written as one ``.safetensors`` file, which other tools read without
torch's pickle: a sparse weight ``W`` becomes three tensors ``W:crow_indices``,
``W:col_indices`` and ``W:values``; the metadata names the model, its classes, the sparse
weights' shapes, and a SHA-256 of every tensor's name, dtype, shape and bytes, so that a
changed byte is refused, not loaded (docs/export.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_file
from .errors import UserError
from .models import create_model, list_models
from .runs import NoCheckpoint, RunFolder, is_run_file, load_checkpoint

FORMAT = "sparsemomentum-export-1"
FORMATS = ("pt", "safetensors")
CSR_KEYS = {"shape", "crow_indices", "col_indices", "values"}
INDEX_TYPES = (torch.int32, torch.int64)


def sparse_state(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The model's state with every masked weight in CSR form."""
    tensors: dict[str, Any] = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if name not in masks:
            tensors[name] = value
            continue
        mask = masks[name].cpu().reshape(value.shape[0], -1)
        rows, columns = mask.nonzero(as_tuple=True)
        index_type = torch.int32 if mask.numel() < 2**31 else torch.int64
        row_counts = torch.bincount(rows, minlength=mask.shape[0])
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), row_counts.cumsum(0)])
        tensors[name] = {
            "shape": list(value.shape),
            "crow_indices": offsets.to(index_type),
            "col_indices": columns.to(index_type),
            "values": value.reshape(mask.shape)[rows, columns],
        }
    return tensors


def export_model(
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    model_name: str,
    num_classes: int,
    path: str | os.PathLike,
    file_format: str = "pt",
) -> int:
    """Write the export atomically in ``file_format`` (``pt`` or ``safetensors``); returns its
    size in bytes."""
    path = Path(path)
    tensors = sparse_state(model, masks)
    payload = {
        "format": FORMAT,
        "model": model_name,
        "num_classes": num_classes,
        "tensors": tensors,
    }
    content = _flat_bytes(payload) if file_format == "safetensors" else None
    try:
        with atomic_file(path) as out:
            if content is None:
                torch.save(payload, out)
            else:
                out.write(content)
    except OSError as error:
        raise UserError(
            f"cannot write {path} ({error.strerror}); choose a writable --out."
        ) from None
    return path.stat().st_size


def export_format(path: str | os.PathLike, file_format: str | None = None) -> str:
    """The format asked for, else the one the file name says (``.safetensors``), else pt."""
    if file_format is None:
        return "safetensors" if Path(path).suffix == ".safetensors" else "pt"
    if file_format not in FORMATS:
        raise UserError(f"unknown export format {file_format!r}; choose pt or safetensors.")
    return file_format


def export_run(
    run_dir: str | os.PathLike, path: str | os.PathLike, file_format: str | None = None
) -> tuple[int, int]:
    """Export the model of a run folder's last checkpoint; returns (export bytes, dense bytes)."""
    run_dir = Path(run_dir)
    file_format = export_format(path, file_format)
    if is_run_file(path):
        raise UserError(
            f"--out {path} would replace a file of the run folder {Path(path).parent}; write the "
            f"export elsewhere, e.g. {Path(path).parent / 'model.pt'}."
        )
    try:
        config = json.loads((run_dir / RunFolder.CONFIG).read_text())
        model_name = config["model"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"{run_dir} is not a run folder with a readable config.json; pass the --out folder "
            "of a training run."
        ) from None
    try:
        state = load_checkpoint(run_dir)
    except NoCheckpoint:
        raise UserError(f"{run_dir} has no checkpoint to export; train it first.") from None
    if not (run_dir / RunFolder.SUMMARY).exists():
        warnings.warn(
            f"the run in {run_dir} has not finished (no summary.json): exporting its last "
            f"checkpoint, from the start of epoch {state['epoch']}.",
            stacklevel=2,
        )
    model = create_model(model_name, num_classes=state["num_classes"])
    model.load_state_dict(state["model"])
    masks = state["sparsifier"]["masks"]
    size = export_model(model, masks, model_name, state["num_classes"], path, file_format)
    dense = io.BytesIO()
    torch.save(model.state_dict(), dense)
    return size, dense.getbuffer().nbytes


def load_exported(path: str | os.PathLike) -> nn.Module:
    """Rebuild the registered model from an export; its predictions equal the trained model's."""
    payload = _read(path)
    model_name, num_classes = _checked_header(payload, path)
    model = create_model(model_name, num_classes=num_classes)
    expected = model.state_dict()
    stored = payload.get("tensors")
    if not isinstance(stored, dict) or set(stored) != set(expected):
        names = set(stored) if isinstance(stored, dict) else set()
        odd = sorted((set(expected) - names) | (names - set(expected))) or ["tensors"]
        raise _damaged(path, f"its tensors do not match the model ({odd[0]!r})")
    state = {name: _restored(name, stored[name], expected[name], path) for name in expected}
    model.load_state_dict(state)
    model.eval()
    return model


def _read(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            is_zip = file.read(2) == b"PK"  # torch.save writes a zip archive, safetensors not
        payload = torch.load(path, map_location="cpu", weights_only=True) if is_zip else None
    except FileNotFoundError:
        raise UserError(
            f"no exported model at {path}; run 'sparsemomentum export RUN_DIR --out FILE' first."
        ) from None
    except Exception as error:
        raise UserError(
            f"{path} is not a readable sparsemomentum export ({type(error).__name__})."
        ) from None
    if payload is None:
        payload = _read_flat(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a sparsemomentum export (format {FORMAT}).")
    return payload


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise UserError(
            "the safetensors format needs the safetensors package: pip install "
            "'sparsemomentum[safetensors]'."
        ) from None
    return safetensors.torch


def _flat_bytes(payload: dict[str, Any]) -> bytes:
    """The export as safetensors bytes: CSR parts as separate tensors, the rest in metadata."""
    tensors, shapes = {}, {}
    for name, value in payload["tensors"].items():
        if isinstance(value, torch.Tensor):
            tensors[name] = value.contiguous()
            continue
        shapes[name] = value["shape"]
        for part in ("crow_indices", "col_indices", "values"):
            tensors[f"{name}:{part}"] = value[part].contiguous()
    metadata = {
        "format": FORMAT,
        "model": payload["model"],
        "num_classes": str(payload["num_classes"]),
        "sparse_shapes": json.dumps(shapes),
        "sha256": _digest(tensors),
    }
    return _safetensors().save(tensors, metadata=metadata)


def _read_flat(path: str | os.PathLike) -> dict[str, Any]:
    """A safetensors export back in the payload form the checks below read."""
    if Path(path).suffix == ".safetensors":
        _safetensors()  # says how to install it
    try:
        from safetensors import safe_open
    except ImportError:
        raise UserError(f"{path} is not a readable sparsemomentum export.") from None
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        shapes = json.loads(metadata.get("sparse_shapes", "{}"))
        num_classes = int(metadata.get("num_classes", ""))
    except Exception as error:  # the library's own error for a malformed header, or ours
        raise UserError(
            f"{path} is not a readable sparsemomentum export ({type(error).__name__})."
        ) from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path} is not a sparsemomentum export (format {FORMAT}).")
    if metadata.get("sha256") != _digest(tensors):
        raise _damaged(path, "its tensors do not match their SHA-256 (a changed byte)")
    return {"format": FORMAT, "model": metadata.get("model"), "num_classes": num_classes,
            "tensors": _nested(tensors, shapes, path)}  # fmt: skip


def _nested(tensors: dict[str, torch.Tensor], shapes: Any, path) -> dict[str, Any]:
    """Gather each sparse weight's three tensors back into one CSR entry."""
    if not isinstance(shapes, dict):
        raise _damaged(path, "its sparse_shapes metadata is not a mapping")
    nested: dict[str, Any] = {name: tensor for name, tensor in tensors.items() if ":" not in name}
    for name, shape in shapes.items():
        parts = {part: tensors.get(f"{name}:{part}") for part in CSR_KEYS - {"shape"}}
        if any(part is None for part in parts.values()):
            raise _damaged(path, f"the sparse weight {name!r} misses one of its parts")
        nested[name] = {"shape": shape, **parts}
    stray = {name.split(":")[0] for name in tensors if ":" in name} - set(shapes)
    if stray:
        raise _damaged(path, f"{sorted(stray)[0]!r} has CSR parts but no shape")
    return nested


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _damaged(path: str | os.PathLike, problem: str) -> UserError:
    return UserError(f"{path} is damaged: {problem}; export the model again.")


def _checked_header(payload: dict[str, Any], path: str | os.PathLike) -> tuple[str, int]:
    model, num_classes = payload.get("model"), payload.get("num_classes")
    if not isinstance(model, str) or model not in list_models():
        raise _damaged(path, f"it names no registered model ({model!r})")
    valid = isinstance(num_classes, int) and not isinstance(num_classes, bool)
    if not valid or not 0 < num_classes <= 10**6:
        raise _damaged(path, f"its number of classes is {num_classes!r}")
    return model, num_classes


def _restored(
    name: str, value: Any, reference: torch.Tensor, path: str | os.PathLike
) -> torch.Tensor:
    """The stored tensor ``name``, checked against the model's before it is rebuilt."""
    if isinstance(value, torch.Tensor):
        if value.shape != reference.shape or value.dtype != reference.dtype:
            raise _damaged(path, f"{name!r} is {value.dtype} {tuple(value.shape)}, not "
                                 f"{reference.dtype} {tuple(reference.shape)}")  # fmt: skip
        return value
    if not isinstance(value, dict) or set(value) != CSR_KEYS:
        raise _damaged(path, f"{name!r} is neither a tensor nor a CSR weight")
    if value["shape"] != list(reference.shape):
        raise _damaged(path, f"the sparse weight {name!r} has shape {value['shape']!r}")
    rows, row_size = reference.shape[0], reference[0].numel() if reference.dim() else 1
    offsets, columns, values = _checked_csr(name, value, rows, reference.dtype, path)
    if not _consistent(offsets, columns, values, row_size):
        raise _damaged(path, f"the sparse weight {name!r} has inconsistent indices")
    dense = torch.zeros(rows, row_size, dtype=values.dtype)
    dense[torch.repeat_interleave(torch.arange(rows), offsets.diff()), columns] = values
    return dense.reshape(reference.shape)


def _checked_csr(name: str, value: dict, rows: int, dtype: torch.dtype, path) -> tuple:
    offsets, columns, values = value["crow_indices"], value["col_indices"], value["values"]
    parts = (
        ("crow_indices", offsets, INDEX_TYPES),
        ("col_indices", columns, INDEX_TYPES),
        ("values", values, (dtype,)),
    )
    for part, tensor, types in parts:
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 1 or tensor.dtype not in types:
            raise _damaged(path, f"{part} of the sparse weight {name!r} is not a 1-D tensor of "
                                 f"{' or '.join(map(str, types))}")  # fmt: skip
    if offsets.numel() != rows + 1:
        raise _damaged(path, f"the sparse weight {name!r} has inconsistent indices")
    return offsets.long(), columns.long(), values


def _consistent(
    offsets: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, row_size: int
) -> bool:
    """Row offsets from 0 to the entry count, columns in range, strictly increasing per row."""
    if int(offsets[0]) != 0 or not bool((offsets.diff() >= 0).all()):
        return False
    if not int(offsets[-1]) == columns.numel() == values.numel():
        return False
    if columns.numel() == 0:
        return True
    if int(columns.min()) < 0 or int(columns.max()) >= row_size:
        return False
    rows = torch.repeat_interleave(torch.arange(offsets.numel() - 1), offsets.diff())
    same_row = rows[1:] == rows[:-1]
    return bool((columns.diff()[same_row] > 0).all())
