"""A new method or backend in a few lines: registered once, usable everywhere."""

from dataclasses import dataclass

import pytest
import torch
from conftest import mlp, train_steps

import sparsemomentum as sm
from sparsemomentum import cli
from sparsemomentum.algorithms import METHODS, method_options
from sparsemomentum.core import selection
from sparsemomentum.core.backend import _BACKENDS
from sparsemomentum.core.optimizer_state import momentum_of
from sparsemomentum.core.sparsifier import option


@dataclass(eq=False)
class MomentumTimesGradient(sm.DynamicSparsifier):
    """An example, not a published method: grows where |momentum| + mix x |gradient| is largest."""

    mix: float = option(0.5, "weight of the gradient in the growth score")

    def grow(self, name: str, count: int) -> torch.Tensor:
        weight = self.weights[name]
        scores = momentum_of(self.optimizer, weight).abs() + self.mix * weight.grad.abs()
        return selection.grow_largest(self.masks[name], scores, count)


@pytest.fixture
def registered():
    sm.register_method("momentum-times-gradient", MomentumTimesGradient)
    yield "momentum-times-gradient"
    del METHODS["momentum-times-gradient"]


def test_a_registered_method_trains_with_exact_counts_and_its_options_reach_the_cli(registered):
    option_ = method_options()["mix"]
    assert (option_.kind, option_.defaults) == (float, {registered: 0.5})
    assert (
        "--mix" in cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    )
    torch.manual_seed(0)
    model = mlp(20, 30, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparsifier = sm.create_sparsifier(
        registered, model, optimizer, density=0.2, total_steps=100, mix=2.0, update_interval=10
    )
    train_steps(sparsifier, model, 30, 20, 10)
    assert sparsifier.update_count == 3 and sparsifier.mix == 2.0
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    with pytest.raises(sm.UserError, match="option 'mix' does not apply to method 'set'"):
        sm.create_sparsifier("set", model, optimizer, density=0.2, total_steps=100, mix=1.0)


def test_registering_a_taken_name_or_a_non_method_is_refused(registered):
    with pytest.raises(sm.UserError, match="'set' is already registered"):
        sm.register_method("set", MomentumTimesGradient)
    with pytest.raises(sm.UserError, match="must be a dataclass deriving from Sparsifier"):
        sm.register_method("plain", object)


class CountingBackend(sm.MaskedBackend):
    """The masked backend, counting optimizer steps and mask changes."""

    name = "counting"

    def __init__(self):
        self.steps = self.layouts = 0

    def step(self, masks, scaler=None):
        self.steps += 1
        return super().step(masks, scaler)

    def masks_changed(self, masks):
        self.layouts += 1
        super().masks_changed(masks)


def test_a_backend_object_or_a_registered_backend_name_is_used_for_every_step():
    sm.register_backend("counting", CountingBackend)
    try:
        for backend in (CountingBackend(), "counting"):
            model = mlp(10, 10)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            sparsifier = sm.SparseMomentum(
                model, optimizer, density=0.3, total_steps=50, update_interval=5, backend=backend
            )
            train_steps(sparsifier, model, 10, 10, 10)
            # one layout at attach, one after each of the two updates
            assert (sparsifier.backend.steps, sparsifier.backend.layouts) == (10, 3)
    finally:
        del _BACKENDS["counting"]
    with pytest.raises(sm.UserError, match="unknown backend 'counting'; choose one of: masked"):
        sm.SparseMomentum(model, optimizer, density=0.3, total_steps=50, backend="counting")
