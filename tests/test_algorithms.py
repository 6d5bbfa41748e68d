"""The baselines: each method's own rule, and the shared invariants for all of them."""

import math

import pytest
import torch
from conftest import mlp, train_steps

import sparsemomentum as sm
from sparsemomentum.core.allocation import initial_counts
from sparsemomentum.core.optimizer_state import momentum_of


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


@pytest.mark.parametrize("method", sorted(sm.METHODS))
def test_every_method_keeps_masked_weights_zero_and_ends_at_the_target(method):
    torch.manual_seed(0)
    model = mlp(20, 30, 10)
    density = {} if method == "dense" else {"density": 0.2}  # the dense baseline keeps everything
    sparsifier = sm.create_sparsifier(method, model, sgd(model), total_steps=400, seed=1, **density)
    for _ in range(4):
        train_steps(sparsifier, model, 100, 20, 10)
        sparsifier.update_masks()
        for name, weight in sparsifier.weights.items():
            assert torch.all(weight[~sparsifier.masks[name]] == 0)
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()


def test_set_prunes_smallest_positive_and_largest_negative_weights_separately():
    model = mlp(10, 1)
    sparsifier = sm.SET(model, sgd(model), density=1.0, total_steps=10, prune_rate=0.5)
    with torch.no_grad():
        # Six negatives near zero, four positives far from it: a plain |w| ranking would
        # drop five negatives; SET drops half of each sign.
        sparsifier.weights["0.weight"].copy_(
            torch.tensor([[-0.1, -0.2, -0.3, -0.4, -0.5, -0.6, 1.0, 2.0, 3.0, 4.0]])
        )
    removed = sparsifier.drop(0.5, {})
    assert removed == {"0.weight": 5}
    assert sparsifier.masks["0.weight"].tolist() == [
        [False, False, False, True, True, True, False, False, True, True]
    ]


def test_set_uses_erdos_renyi_densities_and_regrows_what_each_layer_lost():
    torch.manual_seed(0)
    model = mlp(50, 40, 10)
    sparsifier = sm.SET(model, sgd(model), density=0.1, total_steps=100)
    expected = initial_counts("erdos_renyi", [(40, 50), (10, 40)], 0.1)
    assert [int(m.sum()) for m in sparsifier.masks.values()] == expected
    train_steps(sparsifier, model, 5, 50, 10)
    report = sparsifier.update_masks()
    assert report.grown == report.pruned
    assert [int(m.sum()) for m in sparsifier.masks.values()] == expected


def test_dsr_threshold_doubles_when_too_few_are_pruned_and_halves_when_too_many():
    torch.manual_seed(0)
    model = mlp(30, 30, 10)
    dsr = sm.DSR(
        model,
        sgd(model),
        density=0.2,
        total_steps=100,
        threshold=1e-9,
        prune_rate_schedule="constant",
    )
    dsr.update_masks()
    assert dsr.threshold == pytest.approx(2e-9)
    dsr.threshold = 10.0  # prunes everything: far more than the target
    dsr.update_masks()
    assert dsr.threshold == pytest.approx(5.0)
    assert dsr.nonzero_count() == dsr.target_nonzero_count()


def test_dsr_regrows_in_proportion_to_the_nonzeros_a_layer_has_left():
    torch.manual_seed(0)
    model = mlp(100, 100, 100)
    dsr = sm.DSR(model, sgd(model), density=0.1, total_steps=100, prune_rate_schedule="constant")
    with torch.no_grad():
        dsr.weights["0.weight"].copy_(
            torch.where(torch.arange(10000).view(100, 100) % 2 == 0, 1.0, 1e-6)
            * dsr.masks["0.weight"]
        )
        dsr.weights["2.weight"].fill_(1.0).mul_(dsr.masks["2.weight"])
    left_first = int((dsr.masks["0.weight"] & (dsr.weights["0.weight"] >= dsr.threshold)).sum())
    left_second = int(dsr.masks["2.weight"].sum())
    report = dsr.update_masks()
    total = report.pruned["0.weight"]
    assert report.pruned["2.weight"] == 0
    assert report.grown["0.weight"] == pytest.approx(
        total * left_first / (left_first + left_second), abs=1
    )


def test_rigl_grows_largest_gradients_and_resets_their_momentum():
    torch.manual_seed(0)
    model = mlp(20, 30, 10)
    optimizer = sgd(model)
    rigl = sm.RigL(model, optimizer, density=0.2, total_steps=1000)
    assert (rigl.distribution, rigl.update_interval, rigl.stop_fraction) == ("erk", 100, 0.75)
    train_steps(rigl, model, 99, 20, 10)
    name = "0.weight"
    weight, before = rigl.weights[name], rigl.masks[name].clone()
    train_steps(rigl, model, 1, 20, 10)  # step 100: the update runs inside step()
    assert rigl.update_count == 1
    grown = rigl.masks[name] & ~before
    assert grown.any()
    assert torch.all(weight[grown] == 0)
    assert torch.all(momentum_of(optimizer, weight)[grown] == 0)


def test_rigl_stops_updating_at_75_percent_of_training():
    torch.manual_seed(0)
    model = mlp(10, 10)
    rigl = sm.RigL(model, sgd(model), density=0.3, total_steps=1000)
    train_steps(rigl, model, 1000, 10, 10)
    assert [r.step for r in rigl.history] == list(range(100, 750, 100))
    assert rigl.history[0].prune_rate == pytest.approx(
        0.3 * 0.5 * (1 + math.cos(math.pi * 100 / 750))
    )


def test_rigl_gradient_growth_picks_the_largest_missing_gradients():
    torch.manual_seed(0)
    model = mlp(10, 10)
    rigl = sm.RigL(
        model,
        sgd(model),
        density=0.3,
        total_steps=1000,
        update_interval=None,
        prune_rate_schedule="constant",
    )
    name = "0.weight"
    weight = rigl.weights[name]
    weight.grad = torch.randperm(100).float().view(10, 10)
    before = rigl.masks[name].flatten()
    active = before.nonzero().squeeze(1)
    count = math.ceil(0.3 * active.numel())
    # Expected: the `count` smallest |w| are dropped, then the `count` largest gradients among
    # all missing positions (the just-dropped ones included) grow.
    after_drop = before.clone()
    after_drop[active[weight.detach().flatten()[active].abs().argsort()[:count]]] = False
    missing = (~after_drop).nonzero().squeeze(1)
    expected = after_drop.clone()
    expected[missing[weight.grad.flatten()[missing].argsort(descending=True)[:count]]] = True
    report = rigl.update_masks()
    assert report.pruned[name] == report.grown[name] == count == 9
    assert torch.equal(rigl.masks[name].flatten(), expected)


def test_snip_keeps_the_largest_weight_times_gradient_over_all_layers():
    torch.manual_seed(0)
    model = mlp(8, 8, 4)
    snip = sm.SNIP(model, sgd(model), density=0.25, total_steps=10)
    assert snip.nonzero_count() == 8 * 8 + 8 * 4  # dense until the first gradient arrives
    model(torch.randn(16, 8)).pow(2).mean().backward()
    scores = torch.cat([(w * w.grad).abs().flatten() for w in snip.weights.values()])
    threshold = scores.sort(descending=True).values[snip.target_nonzero_count() - 1]
    snip.step()
    kept = torch.cat([m.flatten() for m in snip.masks.values()])
    assert int(kept.sum()) == snip.target_nonzero_count()
    assert torch.all(scores[kept] >= threshold) and torch.all(scores[~kept] <= threshold)
    before = {n: m.clone() for n, m in snip.masks.items()}
    train_steps(snip, model, 3, 8, 4)
    assert snip.update_masks() is None and all(
        torch.equal(before[n], snip.masks[n]) for n in before
    )


def test_gmp_follows_the_cubic_schedule_and_never_regrows():
    torch.manual_seed(0)
    model = mlp(40, 40, 10)
    gmp = sm.GMP(
        model, sgd(model), density=0.1, total_steps=1000, update_interval=100, end_fraction=0.5
    )
    size = 40 * 40 + 40 * 10
    assert gmp.nonzero_count() == size
    previous = {n: m.clone() for n, m in gmp.masks.items()}
    for step in range(100, 1001, 100):
        train_steps(gmp, model, 100, 40, 10)
        progress = min(step / 500, 1.0)
        expected_density = 0.1 + 0.9 * (1 - progress) ** 3
        assert gmp.nonzero_count() == max(
            math.floor(expected_density * size + 0.5), gmp.target_nonzero_count()
        )
        assert all(torch.all(previous[n] | ~gmp.masks[n]) for n in previous)  # nothing came back
        previous = {n: m.clone() for n, m in gmp.masks.items()}
    assert gmp.nonzero_count() == gmp.target_nonzero_count()


def test_static_never_changes_its_masks():
    torch.manual_seed(0)
    model = mlp(10, 10)
    static = sm.Static(model, sgd(model), density=0.3, total_steps=100)
    before = static.masks["0.weight"].clone()
    train_steps(static, model, 5, 10, 10)
    assert static.update_masks() is None and torch.equal(before, static.masks["0.weight"])


def test_option_of_another_method_is_refused_with_its_owner():
    model = mlp(4, 4)
    with pytest.raises(
        sm.UserError,
        match="option 'threshold' does not apply to method 'set'; it is an option of: dsr",
    ):
        sm.create_sparsifier("set", model, sgd(model), density=0.5, total_steps=10, threshold=0.1)
