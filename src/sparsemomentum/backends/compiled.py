"""The compiled sparse kernels (``csrc/*.c``): built once on first use, cached, called through
ctypes.

Why compiled code at all: with torch's CSR operations the values of a layer must be gathered
from the dense weight into a CSR copy before each product, and the SDDMM's dW and the
optimizer's update scattered back afterwards; on a 4096x4096 layer at 1 % those index
copies took about half of a training step. The kernels here read and write the dense
arrays in place through the CSR pattern, so a step does no gathering at all.

Why ctypes and plain C rather than a ``torch.utils.cpp_extension``: the kernels need no
torch headers, so a build takes about a second instead of a minute, and the library does not
depend on torch's C++ ABI. The build uses the system C compiler (``$CC`` or ``cc``) with
``-O3 -march=native -fopenmp``; its result is cached under ``$SPARSEMOMENTUM_CACHE``
(default ``~/.cache/sparsemomentum``), keyed by the sources, the flags and the CPU, and
written atomically so that concurrent processes (a sweep, torchrun) do not race. All the
``csrc/*.c`` files go into the one library (``sparse_kernels.c``: products, SDDMM, SGD;
``sparse_conv.c``: the direct sparse convolution), so there is one build and one cache entry.

Without a compiler, or with ``SPARSEMOMENTUM_KERNELS=torch``, :func:`library` returns None
and the sparse backend uses torch's own sparse operations (the same results, slower); the
first miss prints one line saying so and how to get the compiled ones.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).with_name("csrc")


def _sources() -> list[Path]:
    """Every C file of the library, sorted so that the build command and the cache key are
    stable."""
    return sorted(SOURCE_DIR.glob("*.c"))


FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"]
_i64, _i32, _f32, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_void_p
_u64, _u32 = ctypes.c_uint64, ctypes.c_uint32
_SIGNATURES = {
    "sm_dropout": [_i64, _ptr, _ptr, _u64, _u32, _f32, _i32],
    "sm_spmm": [
        _i64,
        _i64,
        _ptr,
        _ptr,
        _ptr,
        _i64,
        _i64,
        _ptr,
        _ptr,
        _ptr,
        _ptr,
        _i64,
        _ptr,
        _ptr,
        _i64,
        _i32,
    ],
    "sm_sddmm": [_i64, _i64, _ptr, _ptr, _ptr, _i64, _ptr, _i64, _ptr, _ptr, _i64, _i64, _i32],
    "sm_sgd": [
        _i64,
        _ptr,
        _ptr,
        _i64,
        _ptr,
        _ptr,
        _ptr,
        _f32,
        _f32,
        _f32,
        _f32,
        _i32,
        _i32,
        _i32,
        _i32,
    ],
    "sm_sgd_dense": [_i64, _ptr, _ptr, _ptr, _f32, _f32, _f32, _f32, _i32, _i32, _i32],
    "sm_conv2d_forward": [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i32],
    "sm_conv2d_backward": [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i32],
}


def _cpu_identity() -> str:
    """What -march=native depends on: a cache shared between machines must not hand one CPU
    another's build."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [line for line in info.splitlines() if line.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    return Path(os.environ.get("SPARSEMOMENTUM_CACHE") or Path.home() / ".cache" / "sparsemomentum")


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        partial = Path(scratch) / target.name
        subprocess.run(
            [compiler, *FLAGS, *map(str, _sources()), "-o", str(partial)],
            check=True,
            capture_output=True,
            text=True,
        )
        os.replace(partial, target)  # atomic: another process sees the whole library or none


def _unavailable(reason: str) -> None:
    print(
        f"sparsemomentum: {reason}; the sparse backend uses torch's sparse operations instead "
        "(same results, slower).",
        file=sys.stderr,
    )


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first use; None where it cannot be had (see the
    module doc)."""
    if os.environ.get("SPARSEMOMENTUM_KERNELS", "").lower() == "torch":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    sources = [part for path in _sources() for part in (path.name.encode(), path.read_bytes())]
    key = hashlib.sha256(
        b"\0".join(
            [
                *sources,
                " ".join(FLAGS).encode(),
                _cpu_identity().encode(),
                (compiler or "").encode(),
            ]
        )
    ).hexdigest()[:16]
    target = _cache_dir() / f"sparse_kernels-{key}.so"
    if not target.exists():
        if compiler is None:
            _unavailable(
                "no C compiler found (install gcc, or set $CC, to get the compiled kernels)"
            )
            return None
        try:
            _build(compiler, target)
        except (OSError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", None) or str(error)
            _unavailable(
                f"building the compiled kernels with {compiler} failed "
                f"({detail.strip().splitlines()[-1]})"
            )
            return None
    lib = ctypes.CDLL(str(target))
    for name, arguments in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes = arguments
        function.restype = None
    return lib


def usable(*tensors: torch.Tensor | None) -> bool:
    """Whether the compiled kernels can take these tensors (float32 on the CPU) and are
    available.

    Asked before every product, many times a step: a plain loop over ``is_cpu`` takes 0.6 us
    for three tensors, a generator over ``device.type`` took 2 us (23 calls a LeNet-300-100
    step: about 30 us of its 1 ms).
    """
    for tensor in tensors:
        if tensor is not None and (tensor.dtype is not torch.float32 or not tensor.is_cpu):
            return False
    return library() is not None


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def spmm(
    offsets: torch.Tensor,
    columns: torch.Tensor,
    weight: torch.Tensor,
    row_stride: int,
    column_stride: int,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    values: torch.Tensor | None = None,
    value_index: torch.Tensor | None = None,
    values_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[r] = bias[r] + sum of W(r, c) x[c] over the pattern; x [columns, batch] and
    out [rows, batch], rows contiguous.

    With ``values_out``, W's values are first gathered from the dense ``weight`` through the
    strides into it, in pattern order, and read from there; without, W(r, c) is
    ``values[value_index[k]]`` for the k-th entry.
    """
    if values_out is None and (values is None or value_index is None):
        raise ValueError("spmm reads W from values_out (gathered), or from values and value_index")
    rows, batch = out.shape
    library().sm_spmm(
        rows,
        batch,
        offsets.data_ptr(),
        columns.data_ptr(),
        weight.data_ptr(),
        row_stride,
        column_stride,
        _address(values),
        _address(value_index),
        _address(values_out),
        x.data_ptr(),
        x.stride(0),
        _address(bias),
        out.data_ptr(),
        out.stride(0),
        torch.get_num_threads(),
    )
    return out


def sddmm(
    offsets: torch.Tensor,
    columns: torch.Tensor,
    dy: torch.Tensor,
    x: torch.Tensor,
    grad: torch.Tensor,
    row_stride: int,
    column_stride: int,
    sums: torch.Tensor | None = None,
) -> None:
    """grad(r, c) = dy[r] . x[c] at the pattern's positions of the dense ``grad`` (others
    untouched). ``sums``: scratch of one float per non-zero (a caller that calls often keeps
    one; else it is allocated here)."""
    if sums is None:
        sums = torch.empty(columns.numel(), dtype=torch.float32)
    rows, batch = dy.shape
    library().sm_sddmm(
        rows,
        batch,
        offsets.data_ptr(),
        columns.data_ptr(),
        dy.data_ptr(),
        dy.stride(0),
        x.data_ptr(),
        x.stride(0),
        sums.data_ptr(),
        grad.data_ptr(),
        row_stride,
        column_stride,
        torch.get_num_threads(),
    )


def sgd(
    offsets: torch.Tensor,
    columns: torch.Tensor,
    weight: torch.Tensor,
    grad: torch.Tensor,
    buffer: torch.Tensor | None,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    first_step: bool,
    missing_momentum: bool = False,
) -> None:
    """torch's SGD update of a contiguous weight [rows, ...] at the pattern's positions (columns
    index a row's elements), in place.

    ``missing_momentum``: ``grad`` is dense, and the momentum of every other position steps too.
    """
    library().sm_sgd(
        offsets.numel() - 1,
        offsets.data_ptr(),
        columns.data_ptr(),
        weight[0].numel(),
        weight.data_ptr(),
        grad.data_ptr(),
        _address(buffer),
        lr,
        weight_decay,
        momentum,
        dampening,
        int(nesterov),
        int(first_step),
        int(missing_momentum),
        torch.get_num_threads(),
    )


def sgd_dense(
    weight: torch.Tensor,
    grad: torch.Tensor,
    buffer: torch.Tensor | None,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    first_step: bool,
) -> None:
    """torch's SGD update of every element of a contiguous weight, in place, in one pass."""
    library().sm_sgd_dense(
        weight.numel(),
        weight.data_ptr(),
        grad.data_ptr(),
        _address(buffer),
        lr,
        weight_decay,
        momentum,
        dampening,
        int(nesterov),
        int(first_step),
        torch.get_num_threads(),
    )


def conv2d_forward(
    geometry: torch.Tensor,
    offsets: torch.Tensor,
    columns: torch.Tensor,
    weight: torch.Tensor,
    input: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
) -> torch.Tensor:
    """out = conv2d(input, weight at the pattern, bias); all contiguous, ``geometry`` from
    ``SparseConvLayout.geometry``."""
    library().sm_conv2d_forward(
        geometry.data_ptr(),
        offsets.data_ptr(),
        columns.data_ptr(),
        weight.data_ptr(),
        input.data_ptr(),
        _address(bias),
        out.data_ptr(),
        torch.get_num_threads(),
    )
    return out


def conv2d_backward(
    geometry: torch.Tensor,
    offsets: torch.Tensor,
    columns: torch.Tensor,
    transposed_offsets: torch.Tensor,
    transposed_entries: torch.Tensor,
    weight: torch.Tensor,
    input: torch.Tensor,
    grad_output: torch.Tensor,
    grad_input: torch.Tensor | None,
    grad_weight: torch.Tensor | None,
) -> None:
    """The convolution's input gradient into ``grad_input`` and/or its weight gradient at the
    pattern's positions of the dense ``grad_weight`` (others untouched), in one pass; None skips
    one."""
    library().sm_conv2d_backward(
        geometry.data_ptr(),
        offsets.data_ptr(),
        columns.data_ptr(),
        transposed_offsets.data_ptr(),
        transposed_entries.data_ptr(),
        weight.data_ptr(),
        input.data_ptr(),
        grad_output.data_ptr(),
        _address(grad_input),
        _address(grad_weight),
        torch.get_num_threads(),
    )


def dropout(x: torch.Tensor, out: torch.Tensor, seed: int, keep: float) -> torch.Tensor:
    """out = x * mask / keep, the mask a hash of (seed, index) (csrc/dropout.c); contiguous."""
    threshold = min(1 << 24, round(keep * (1 << 24)))
    library().sm_dropout(x.numel(), x.data_ptr(), out.data_ptr(), seed, threshold, 1.0 / keep,
                         torch.get_num_threads())  # fmt: skip
    return out
