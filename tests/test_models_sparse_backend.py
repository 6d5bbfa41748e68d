"""Every model in the registry trains on the sparse backend: forward, backward, step, update.

VGG's ReLU(inplace=True) after a sparse Linear layer once crashed ("a view ... is being
modified inplace"); each model runs a few real steps here, with a mask update between them.
"""

import pytest
import torch
import torch.nn.functional as F

import sparsemomentum as sm

LANGUAGE_MODELS = ("gpt-char", "gpt-char-tied", "lstm-char")


def example_batch(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two inputs of the shape the model takes, and their targets."""
    if name in LANGUAGE_MODELS:
        tokens = torch.randint(0, 84, (2, 64))
        return tokens, tokens
    if name.startswith(("lenet300", "mlp-")):
        shape = (784,)
    elif name.startswith("lenet5") or name.endswith("-mnist"):
        shape = (1, 28, 28)
    else:
        shape = (3, 64, 64) if name == "resnet50" else (3, 32, 32)
    return torch.randn(2, *shape), torch.tensor([1, 7])


@pytest.mark.parametrize("name", sm.list_models())
def test_every_registered_model_trains_on_the_sparse_backend(name):
    torch.manual_seed(0)
    model = sm.create_model(name, num_classes=84 if name in LANGUAGE_MODELS else 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.05, total_steps=100, update_interval=2, backend="sparse"
    )
    assert sparsifier.backend.kernels.sparse, "no layer of the model runs on a sparse kernel"
    inputs, targets = example_batch(name)
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs).flatten(0, -2), targets.flatten()).backward()
        sparsifier.step()
    assert sparsifier.update_count == 1
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    for name_, weight in sparsifier.weights.items():
        assert torch.all(weight[~sparsifier.masks[name_]] == 0)
