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


def test_every_registered_model_and_data_set_says_what_input_it_takes():
    """The CLI's model/data check (train/config.py) relies on these declarations."""
    from sparsemomentum import inputs
    from sparsemomentum.data import dataset_inputs, list_datasets

    kinds = {inputs.GREY_28, inputs.COLOUR_32, inputs.COLOUR_224, inputs.CHARACTERS}
    for name in sm.list_models():
        assert sm.models.model_inputs(name) and set(sm.models.model_inputs(name)) <= kinds, name
    built_in = {
        "mnist": inputs.GREY_28,
        "fashion-mnist": inputs.GREY_28,
        "cifar10": inputs.COLOUR_32,
        "cifar100": inputs.COLOUR_32,
        "imagenet": inputs.COLOUR_224,
        "shakespeare-char": inputs.CHARACTERS,
    }  # other tests register data sets of their own
    assert {name: dataset_inputs(name) for name in built_in} == built_in
    assert set(built_in) <= set(list_datasets())
    assert sm.models.model_inputs("lenet5-caffe") == (inputs.GREY_28,)
    assert sm.models.model_inputs("gpt-char") == (inputs.CHARACTERS,)
