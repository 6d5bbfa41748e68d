"""Every model in the registry trains on the sparse backend: forward, backward, step, update.

VGG's ReLU(inplace=True) after a sparse Linear layer once crashed ("a view ... is being
modified inplace"); each model runs a few real steps here, with a mask update between them.
"""

import pytest
import torch
import torch.nn.functional as F

import sparsemomentum as sm

INPUT_SHAPES = {"lenet300-100": (784,), "lenet5-caffe": (1, 28, 28), "resnet50": (3, 64, 64)}


@pytest.mark.parametrize("name", sm.list_models())
def test_every_registered_model_trains_on_the_sparse_backend(name):
    torch.manual_seed(0)
    model = sm.create_model(name, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.05, total_steps=100, update_interval=2, backend="sparse"
    )
    assert sparsifier.backend.kernels.sparse, "no layer of the model runs on a sparse kernel"
    shape = INPUT_SHAPES.get(name, (3, 32, 32))
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(torch.randn(2, *shape)), torch.tensor([1, 7])).backward()
        sparsifier.step()
    assert sparsifier.update_count == 1
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    for name_, weight in sparsifier.weights.items():
        assert torch.all(weight[~sparsifier.masks[name_]] == 0)
