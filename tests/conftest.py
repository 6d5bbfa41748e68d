import os
from pathlib import Path

import pytest
import torch
from torch import nn

DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real MNIST: $SPARSEMOMENTUM_DATA, else ../shared/data beside the checkout."""
    folder = Path(os.environ.get("SPARSEMOMENTUM_DATA", DEFAULT_SHARED_DATA))
    if not (folder / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found under {folder}; set SPARSEMOMENTUM_DATA")
    return folder


def mlp(*sizes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train_steps(
    sparsifier,
    model: nn.Module,
    steps: int,
    in_features: int | tuple[int, ...],
    out_features: int,
    seed: int = 0,
) -> None:
    """A few optimizer steps on random regression data, through the sparsifier (``in_features``: a
    shape for images)."""
    generator = torch.Generator().manual_seed(seed)
    input_shape = in_features if isinstance(in_features, tuple) else (in_features,)
    for _ in range(steps):
        inputs = torch.randn(16, *input_shape, generator=generator)
        targets = torch.randn(16, out_features, generator=generator)
        sparsifier.optimizer.zero_grad()
        nn.functional.mse_loss(model(inputs), targets).backward()
        sparsifier.step()


@pytest.fixture(params=["compiled", "torch"])
def kernel_set(request, monkeypatch) -> str:
    """Runs a test with the compiled sparse kernels and again with torch's fallback operations."""
    from sparsemomentum.backends import compiled

    if request.param == "torch":
        monkeypatch.setattr(compiled, "library", lambda: None)
    elif compiled.library() is None:
        pytest.skip("the compiled kernels could not be built here (no C compiler)")
    return request.param
