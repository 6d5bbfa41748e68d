"""sparse_kaiming_: deep sparse ReLU networks keep their signal; counts and zeros stay exact."""

import json

import pytest
import torch
from conftest import mlp
from torch import nn

import sparsemomentum as sm
from sparsemomentum.cli import main


def signal_ratios(model: nn.Sequential, inputs: torch.Tensor) -> list[float]:
    """Standard deviation of each Linear layer's output over that of the network's input."""
    ratios, signal = [], inputs
    with torch.no_grad():
        for layer in model:
            signal = layer(signal)
            if isinstance(layer, nn.Linear):
                ratios.append((signal.std() / inputs.std()).item())
    return ratios


def sparsifier_for(model: nn.Module, backend: str = "masked") -> sm.Sparsifier:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return sm.SparseMomentum(
        model, optimizer, density=0.05, total_steps=100, steps_per_epoch=10, backend=backend
    )


def test_a_deep_mlp_at_5_percent_keeps_its_signal_only_with_sparse_kaiming():
    torch.manual_seed(0)
    inputs = torch.randn(256, 300)
    default = mlp(300, 300, 300, 300, 300, 300, 10)
    sparsifier_for(default)
    assert signal_ratios(default, inputs)[-1] < 0.1  # the default init, masked: signal fades

    model = mlp(300, 300, 300, 300, 300, 300, 10)
    sparsifier = sparsifier_for(model)
    counts = {name: int(mask.sum()) for name, mask in sparsifier.masks.items()}
    sm.sparse_kaiming_(sparsifier, generator=torch.Generator().manual_seed(1))
    ratios = signal_ratios(model, inputs)
    assert all(0.3 < ratio < 3.0 for ratio in ratios), ratios
    for name, weight in sparsifier.weights.items():
        mask = sparsifier.masks[name]
        assert int(mask.sum()) == counts[name]  # the masks are untouched
        assert torch.all(weight[~mask] == 0) and torch.all(weight[mask] != 0)


def test_the_sparse_backend_computes_with_the_redrawn_weights():
    torch.manual_seed(0)
    masked_model = mlp(300, 300, 300, 10)
    sparse_model = mlp(300, 300, 300, 10)
    sparse_model.load_state_dict(masked_model.state_dict())
    inputs = torch.randn(32, 300)
    for model, backend in ((masked_model, "masked"), (sparse_model, "sparse")):
        torch.manual_seed(3)  # the same masks
        sparsifier = sparsifier_for(model, backend)
        sm.sparse_kaiming_(sparsifier, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sparse_model(inputs), masked_model(inputs), rtol=1e-4, atol=1e-5)


def test_an_unknown_initialisation_is_one_sentence(tmp_path, capsys):
    assert main(["train", "--init", "xavier", "--out", str(tmp_path / "run")]) == 2
    assert "unknown initialisation 'xavier'; choose one of: model, sparse-kaiming." in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("init, trains", [("model", False), ("sparse-kaiming", True)])
def test_a_deep_mlp_trains_at_5_percent_with_sparse_kaiming_reproducibly(
    data_dir, tmp_path, init, trains
):
    losses = []
    for name in ("a", "b"):
        arguments = ["train", "--model", "mlp-300x4", "--dataset", "fashion-mnist",
                     "--epochs", "1", "--init", init, "--max-steps", "100",
                     "--data-dir", str(data_dir), "--out", str(tmp_path / name)]  # fmt: skip
        assert main(arguments) == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        losses.append(summary["test_loss"])
        assert (summary["test_error"] < 40) == trains  # default init: ln 10, chance (90 %)
    assert losses[0] == losses[1]  # the same seed draws the same weights
