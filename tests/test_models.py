import pytest
import torch

import sparsemomentum as sm


@pytest.mark.parametrize(
    "name, parameters",
    [
        ("lenet300-100", 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),
        ("lenet5-caffe", 20 * 25 + 20 + 50 * 20 * 25 + 50 + 800 * 500 + 500 + 500 * 10 + 10),
    ],
)
def test_lenets_have_the_published_shapes(name, parameters):
    model = sm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(
        sm.UserError, match="unknown model 'resnet-9000'; choose one of: .*lenet300-100"
    ):
        sm.create_model("resnet-9000")
