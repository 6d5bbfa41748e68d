"""Every rule of the spec for one mask update, and the invariants of the loop."""

import math

import pytest
import torch
from conftest import mlp, train_steps
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sparsemomentum as sm
from sparsemomentum.core.optimizer_state import momentum_of
from sparsemomentum.core.parts import REDISTRIBUTIONS


def sgd(model, momentum=0.9, **kwargs):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=momentum, **kwargs)


def two_layer(density=0.5, **options):
    torch.manual_seed(0)
    model = mlp(10, 20, 5)
    optimizer = sgd(model)
    sparsifier = sm.SparseMomentum(model, optimizer, density=density, total_steps=100, **options)
    train_steps(sparsifier, model, 1, 10, 5)  # creates momentum buffers
    return model, optimizer, sparsifier


def set_momentum(optimizer, weight, values):
    optimizer.state[weight]["momentum_buffer"].copy_(values)


def test_masked_weights_are_exactly_zero_after_every_step():
    model, optimizer, sparsifier = two_layer()
    for _ in range(5):
        train_steps(sparsifier, model, 1, 10, 5)
        for name, weight in sparsifier.weights.items():
            assert torch.all(weight[~sparsifier.masks[name]] == 0)


def test_gradients_of_missing_weights_are_not_masked_so_they_build_momentum():
    model, optimizer, sparsifier = two_layer()
    weight = sparsifier.weights["0.weight"]
    missing = ~sparsifier.masks["0.weight"]
    assert momentum_of(optimizer, weight)[missing].abs().sum() > 0


def test_statistic_is_mean_momentum_over_active_weights_only():
    model, optimizer, sparsifier = two_layer()
    for name, value in (("0.weight", 1.0), ("2.weight", 3.0)):
        weight, mask = sparsifier.weights[name], sparsifier.masks[name]
        set_momentum(
            optimizer,
            weight,
            torch.where(mask, torch.full_like(weight, value), torch.full_like(weight, 100.0)),
        )
    statistic = REDISTRIBUTIONS["momentum"].statistic
    assert statistic(sparsifier, "0.weight") == pytest.approx(1.0)
    assert statistic(sparsifier, "2.weight") == pytest.approx(3.0)
    shares = REDISTRIBUTIONS["momentum"].shares(sparsifier)
    assert shares == {"0.weight": pytest.approx(0.25), "2.weight": pytest.approx(0.75)}


def test_adam_statistic_is_first_moment_over_root_second_moment():
    model = mlp(4, 3)
    optimizer = torch.optim.Adam(model.parameters(), eps=0.5)
    sparsifier = sm.SparseMomentum(model, optimizer, density=0.5, total_steps=10)
    train_steps(sparsifier, model, 1, 4, 3)
    state = optimizer.state[sparsifier.weights["0.weight"]]
    state["exp_avg"].fill_(2.0)
    state["exp_avg_sq"].fill_(9.0)
    statistic = REDISTRIBUTIONS["momentum"].statistic
    assert statistic(sparsifier, "0.weight") == pytest.approx(2.0 / 3.5)


def test_prune_removes_the_smallest_magnitudes_per_layer():
    model, optimizer, sparsifier = two_layer(redistribution="none")
    weight, mask = sparsifier.weights["0.weight"], sparsifier.masks["0.weight"]
    with torch.no_grad():
        active = mask.nonzero(as_tuple=True)
        magnitudes = torch.randperm(len(active[0])).float() + 1.0
        signs = torch.where(torch.rand(len(magnitudes)) < 0.5, -1.0, 1.0)
        weight[active] = magnitudes * signs
    count = math.ceil(0.5 * len(magnitudes))
    expected_removed = {(int(r), int(c)) for r, c, m in zip(*active, magnitudes) if m <= count}
    removed = sparsifier.drop(0.5, {n: 0.5 for n in sparsifier.masks})
    assert removed["0.weight"] == count
    now_missing = mask & ~sparsifier.masks["0.weight"]
    assert {tuple(map(int, p)) for p in now_missing.nonzero()} == expected_removed


def test_growth_picks_the_largest_momentum_missing_positions():
    model, optimizer, sparsifier = two_layer(redistribution="none")
    name = "0.weight"
    weight, before = sparsifier.weights[name], sparsifier.masks[name].clone()
    with torch.no_grad():  # distinct magnitudes, so the pruned set is known in advance
        weight.copy_((torch.randperm(weight.numel()).float().view_as(weight) + 1.0) * before)
    momentum_scores = torch.randperm(weight.numel()).float().view_as(weight)
    set_momentum(
        optimizer, weight, -momentum_scores
    )  # the sign must not matter: |momentum| is read
    prune_count = math.ceil(sparsifier.current_prune_rate() * int(before.sum()))
    magnitudes = torch.where(before, weight.detach().abs(), torch.tensor(float("inf")))
    pruned = torch.zeros_like(before).flatten()
    pruned[magnitudes.flatten().argsort()[:prune_count]] = True
    survivors = before & ~pruned.view_as(before)
    # Candidates: every position missing after pruning, the just-pruned ones included.
    candidate_scores = torch.where(survivors, torch.tensor(-1.0), momentum_scores).flatten()
    expected_grown = torch.zeros_like(pruned)
    expected_grown[candidate_scores.argsort(descending=True)[:prune_count]] = True
    report = sparsifier.update_masks()
    assert report.pruned[name] == report.grown[name] == prune_count
    assert torch.equal(sparsifier.masks[name], survivors | expected_grown.view_as(before))


def test_grown_weights_start_at_zero_and_keep_their_momentum():
    model, optimizer, sparsifier = two_layer()
    before_masks = {n: m.clone() for n, m in sparsifier.masks.items()}
    before_momentum = {n: momentum_of(optimizer, w).clone() for n, w in sparsifier.weights.items()}
    sparsifier.update_masks()
    for name, weight in sparsifier.weights.items():
        grown = sparsifier.masks[name] & ~before_masks[name]
        assert grown.any()
        assert torch.all(weight[grown] == 0)
        assert torch.equal(momentum_of(optimizer, weight)[grown], before_momentum[name][grown])


def test_redistribution_is_proportional_to_momentum_share():
    torch.manual_seed(0)
    model = mlp(100, 100, 100)
    optimizer = sgd(model)
    sparsifier = sm.SparseMomentum(
        model,
        optimizer,
        density=0.1,
        total_steps=100,
        prune_rate=0.5,
        prune_rate_schedule="constant",
    )
    train_steps(sparsifier, model, 1, 100, 100)
    for name, value in (("0.weight", 1.0), ("2.weight", 3.0)):
        set_momentum(optimizer, sparsifier.weights[name], torch.full((100, 100), value))
    report = sparsifier.update_masks()
    assert report.pruned == {"0.weight": 500, "2.weight": 500}
    assert report.grown == {"0.weight": 250, "2.weight": 750}
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count() == 2000
    assert sparsifier.overall_density() == 2000 / 20000
    assert sparsifier.layer_densities() == {"0.weight": 0.075, "2.weight": 0.125}


def test_overflow_is_handed_to_layers_with_room():
    torch.manual_seed(0)
    model = mlp(10, 10, 100)  # 100 and 1000 weights
    optimizer = sgd(model)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.5, total_steps=100, prune_rate_schedule="constant"
    )
    train_steps(sparsifier, model, 1, 10, 100)
    set_momentum(optimizer, sparsifier.weights["0.weight"], torch.full((10, 10), 1000.0))
    set_momentum(optimizer, sparsifier.weights["2.weight"], torch.full((100, 10), 1.0))
    sparsifier.update_masks()
    assert int(sparsifier.masks["0.weight"].sum()) == 100  # full: its share did not fit
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()


def test_dense_growing_layer_is_guarded_from_pruning():
    torch.manual_seed(0)
    model = mlp(10, 10, 100)
    optimizer = sgd(model)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.5, total_steps=100, prune_rate_schedule="constant"
    )
    train_steps(sparsifier, model, 1, 10, 100)
    sparsifier.masks["0.weight"][:] = True  # fully dense layer with a large share
    sparsifier.masks["2.weight"] = sparsifier.masks["2.weight"].clone()
    rates = sparsifier.layer_prune_rates(0.5, {"0.weight": 0.9, "2.weight": 0.1})
    assert rates == {"0.weight": 0.0, "2.weight": 0.5}
    sparsifier.masks["0.weight"].view(-1)[:10] = False  # 90 % dense: prune at most its sparsity
    assert sparsifier.layer_prune_rates(0.5, {"0.weight": 0.9, "2.weight": 0.1})[
        "0.weight"
    ] == pytest.approx(0.1)


@pytest.mark.filterwarnings("ignore:density .* leaves")
@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=2, max_size=5),
    density=st.floats(0.01, 1.0),
    distribution=st.sampled_from(["uniform", "erdos_renyi", "erk"]),
    redistribution=st.sampled_from(["momentum", "magnitude", "nonzero", "surviving", "none"]),
    growth=st.sampled_from(["momentum", "random", "gradient"]),
    overflow=st.sampled_from(["proportional", "reference"]),
    rates=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_bookkeeping_is_exact_for_any_layers_densities_and_updates(
    sizes, density, distribution, redistribution, growth, overflow, rates, seed
):
    torch.manual_seed(seed)
    model = mlp(*sizes)
    optimizer = sgd(model)
    sparsifier = sm.SparseMomentum(
        model,
        optimizer,
        density=density,
        total_steps=1000,
        distribution=distribution,
        redistribution=redistribution,
        growth=growth,
        overflow=overflow,
        prune_rate_schedule="constant",
        seed=seed,
    )
    target = sparsifier.target_nonzero_count()
    assert target == max(
        1, math.floor(density * sum(w.numel() for w in sparsifier.weights.values()) + 0.5)
    )
    assert sparsifier.nonzero_count() == target
    for rate in rates:
        train_steps(sparsifier, model, 2, sizes[0], sizes[-1], seed=seed)
        sparsifier.prune_rate = rate
        before = {name: int(mask.sum()) for name, mask in sparsifier.masks.items()}
        report = sparsifier.update_masks()
        assert sum(report.pruned.values()) == sum(report.grown.values())
        assert sparsifier.nonzero_count() == target
        for name, weight in sparsifier.weights.items():
            mask = sparsifier.masks[name]
            assert mask.dtype == torch.bool and mask.shape == weight.shape
            # each layer's count is exactly what the report says it pruned and grew
            assert int(mask.sum()) == before[name] - report.pruned[name] + report.grown[name]
            assert torch.all(weight[~mask] == 0)


def test_same_seed_same_masks_and_different_seed_different_masks():
    def masks(seed):
        torch.manual_seed(0)
        model = mlp(30, 30, 10)
        return sm.SparseMomentum(model, sgd(model), density=0.2, total_steps=10, seed=seed).masks

    first, again, other = masks(1), masks(1), masks(2)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not all(torch.equal(first[n], other[n]) for n in first)


def test_update_is_a_no_op_once_training_is_over():
    model, optimizer, sparsifier = two_layer()
    sparsifier.step_count = sparsifier.total_steps
    before = {n: m.clone() for n, m in sparsifier.masks.items()}
    assert sparsifier.update_masks() is None
    assert all(torch.equal(before[n], sparsifier.masks[n]) for n in before)


def test_update_interval_updates_every_k_steps_until_the_stop_fraction():
    torch.manual_seed(0)
    model = mlp(10, 20, 5)
    sparsifier = sm.SparseMomentum(
        model, sgd(model), density=0.3, total_steps=100, update_interval=10, stop_fraction=0.75
    )
    train_steps(sparsifier, model, 100, 10, 5)
    assert [r.step for r in sparsifier.history] == [10, 20, 30, 40, 50, 60, 70]


def test_adam_without_state_yet_does_not_crash():
    model = mlp(8, 8, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    sparsifier = sm.SparseMomentum(model, optimizer, density=0.3, total_steps=10)
    sparsifier.update_masks()  # no optimizer state at all yet
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    train_steps(sparsifier, model, 2, 8, 4)
    sparsifier.update_masks()
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_and_without_nesterov(nesterov):
    model = mlp(8, 8, 4)
    sparsifier = sm.SparseMomentum(
        model, sgd(model, nesterov=nesterov), density=0.3, total_steps=10
    )
    train_steps(sparsifier, model, 3, 8, 4)
    sparsifier.update_masks()
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()


def test_conv_layers_are_sparse_and_norms_and_embeddings_stay_dense():
    model = nn.Sequential(
        nn.Embedding(10, 4),
        nn.Conv1d(4, 4, 3),
        nn.BatchNorm1d(4),
        nn.Conv2d(4, 4, 3),
        nn.Conv3d(4, 4, 1),
        nn.LayerNorm(4),
        nn.Linear(4, 2),
    )
    sparsifier = sm.SparseMomentum(model, sgd(model), density=0.5, total_steps=10)
    assert list(sparsifier.masks) == ["1.weight", "3.weight", "4.weight", "6.weight"]


def test_include_and_exclude_patterns_choose_the_sparse_tensors():
    model = mlp(8, 8, 8, 4)
    only_first = sm.SparseMomentum(model, sgd(model), density=0.5, total_steps=10, include=["0.*"])
    assert list(only_first.masks) == ["0.weight"]
    model = mlp(8, 8, 8, 4)
    no_last = sm.SparseMomentum(
        model, sgd(model), density=0.5, total_steps=10, exclude=["4.weight"]
    )
    assert list(no_last.masks) == ["0.weight", "2.weight"]


def test_state_dict_round_trip_restores_masks_and_counters():
    model, optimizer, sparsifier = two_layer()
    sparsifier.update_masks()
    state = sparsifier.state_dict()
    torch.manual_seed(0)
    fresh_model = mlp(10, 20, 5)
    fresh = sm.SparseMomentum(fresh_model, sgd(fresh_model), density=0.5, total_steps=100, seed=99)
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.masks[n], sparsifier.masks[n]) for n in state["masks"])
    assert (fresh.step_count, fresh.update_count) == (
        sparsifier.step_count,
        sparsifier.update_count,
    )
    assert (
        torch.rand(3, generator=fresh.generator).tolist()
        == torch.rand(3, generator=sparsifier.generator).tolist()
    )
    assert (
        fresh.history == sparsifier.history and len(fresh.history) == 1
    )  # the per-update reports survive a resume


def test_state_dict_for_another_model_is_refused():
    _, _, sparsifier = two_layer()
    other = mlp(10, 21, 5)
    wrong_shape = sm.SparseMomentum(other, sgd(other), density=0.5, total_steps=100)
    with pytest.raises(sm.UserError, match=r"mask for '0.weight' has shape \(20, 10\)"):
        wrong_shape.load_state_dict(sparsifier.state_dict())
    state = sparsifier.state_dict()
    del state["masks"]["2.weight"]
    with pytest.raises(sm.UserError, match="masks do not match the model"):
        sparsifier.load_state_dict(state)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"density": 0.0}, r"density must be in \(0, 1\], got 0.0"),
        ({"density": 1.2}, r"density must be in \(0, 1\], got 1.2"),
        ({"density": float("nan")}, r"density must be in \(0, 1\], got nan"),
        ({"final_prune_rate": 1.0}, r"final prune rate must be in \[0, 1\)"),
        ({"stop_fraction": 0.0}, r"stop fraction must be in \(0, 1\]"),
        ({"overflow": "x"}, "unknown overflow rule 'x'; choose one of: proportional, reference"),
        ({"momentum_window": 0}, "momentum window must be at least one step"),
        ({"steps_per_epoch": 0}, "steps_per_epoch must be a positive number"),
        ({"prune_rate": 1.0}, r"prune rate must be in \[0, 1\), got 1.0"),
        ({"prune_rate": -0.1}, r"prune rate must be in \[0, 1\)"),
        ({"total_steps": 0}, "total_steps must be the number of optimizer steps"),
        ({"growth": "magic"}, "unknown growth 'magic'; choose one of: gradient, momentum, random"),
        ({"redistribution": "x"}, "unknown redistribution 'x'"),
        ({"distribution": "x"}, "unknown density distribution 'x'"),
        ({"prune_rate_schedule": "x"}, "unknown prune-rate schedule 'x'"),
        ({"update_interval": 0}, "update interval must be a positive number"),
    ],
)
def test_bad_options_are_refused_with_one_sentence(options, message):
    model = mlp(4, 4)
    arguments = {"density": 0.5, "total_steps": 10, **options}
    with pytest.raises(sm.UserError, match=message):
        sm.SparseMomentum(model, sgd(model), **arguments)


def test_model_with_nothing_to_sparsify_is_refused():
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Embedding(3, 4))
    with pytest.raises(sm.UserError, match="the model has nothing to sparsify"):
        sm.SparseMomentum(model, sgd(model), density=0.5, total_steps=10)


def test_optimizer_of_another_model_is_refused():
    model, other = mlp(4, 4), mlp(4, 4)
    with pytest.raises(
        sm.UserError, match="the optimizer does not hold the model's parameter '0.weight'"
    ):
        sm.SparseMomentum(model, sgd(other), density=0.5, total_steps=10)


def test_momentum_growth_needs_an_optimizer_with_momentum():
    model = mlp(4, 4)
    with pytest.raises(sm.UserError, match="needs SGD with momentum > 0"):
        sm.SparseMomentum(model, sgd(model, momentum=0.0), density=0.5, total_steps=10)
    model = mlp(4, 4)
    with pytest.raises(sm.UserError, match="supports SGD, Adam and AdamW, not RMSprop"):
        sm.SparseMomentum(
            model, torch.optim.RMSprop(model.parameters()), density=0.5, total_steps=10
        )
    model = mlp(4, 4)
    sm.SparseMomentum(
        model,
        sgd(model, momentum=0.0),
        density=0.5,
        total_steps=10,
        growth="random",
        redistribution="none",
    )


def test_dense_baseline_has_full_masks_and_never_updates():
    model = mlp(8, 8, 4)
    dense = sm.Dense(model, sgd(model))
    assert dense.nonzero_count() == dense.target_nonzero_count() == 8 * 8 + 8 * 4
    train_steps(dense, model, 2, 8, 4)
    assert dense.update_masks() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    model = mlp(8, 8, 4).cuda()
    sparsifier = sm.SparseMomentum(model, sgd(model), density=0.3, total_steps=10)
    assert all(m.device.type == "cuda" for m in sparsifier.masks.values())
    inputs = torch.randn(4, 8, device="cuda")
    model(inputs).sum().backward()
    sparsifier.step()
    sparsifier.update_masks()
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()


def test_state_dict_of_another_density_is_refused():
    _, _, sparsifier = two_layer(density=0.5)
    torch.manual_seed(0)
    model = mlp(10, 20, 5)
    other = sm.SparseMomentum(model, sgd(model), density=0.3, total_steps=100)
    with pytest.raises(
        sm.UserError, match="the checkpoint keeps 150 non-zeros but density 0.3 means 90"
    ):
        other.load_state_dict(sparsifier.state_dict())


def test_a_damaged_or_foreign_state_is_refused_before_anything_changes():
    model = mlp(30, 20, 10)
    sparsifier = sm.SparseMomentum(model, sgd(model), density=0.2, total_steps=100, seed=1)
    train_steps(sparsifier, model, 3, 30, 10)
    state = sparsifier.state_dict()
    masks_before, steps_before = {n: m.clone() for n, m in sparsifier.masks.items()}, 3
    full = {**state, "masks": {n: torch.ones_like(m) for n, m in state["masks"].items()}}
    with pytest.raises(
        sm.UserError, match="masks hold 800 non-zeros where SparseMomentum keeps 160"
    ):
        sparsifier.load_state_dict(full)
    floats = {**state, "masks": {n: m.float() for n, m in state["masks"].items()}}
    with pytest.raises(sm.UserError, match="mask for '0.weight' is not a boolean tensor"):
        sparsifier.load_state_dict(floats)
    for method in (sm.DSR, sm.SNIP):
        other = method(model, sgd(model), density=0.2, total_steps=100)
        other_masks = {n: m.clone() for n, m in other.masks.items()}
        with pytest.raises(sm.UserError, match="written by another method than"):
            other.load_state_dict(state)
        assert other.step_count == 0
        assert all(torch.equal(other.masks[n], other_masks[n]) for n in other_masks)
    assert sparsifier.step_count == steps_before
    assert all(torch.equal(sparsifier.masks[n], masks_before[n]) for n in masks_before)


class TiedModel(nn.Module):
    """A Linear layer whose weight a second layer (or an Embedding) shares."""

    def __init__(self, second: nn.Module):
        super().__init__()
        self.first = nn.Linear(8, 8, bias=False)
        self.second = second
        self.second.weight = self.first.weight

    def forward(self, inputs):
        if isinstance(self.second, nn.Embedding):
            return self.first(self.second(inputs.argmax(1) % 8))
        return self.second(torch.relu(self.first(inputs)))


@pytest.mark.parametrize("backend", ["masked", "sparse"])
def test_a_tied_weight_gets_one_mask_counted_once_and_stays_masked(backend):
    torch.manual_seed(0)
    model = TiedModel(nn.Linear(8, 8, bias=False))
    optimizer = sgd(model)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=0.25, total_steps=40, update_interval=5, backend=backend
    )
    assert list(sparsifier.weights) == ["first.weight"]
    train_steps(sparsifier, model, 12, 8, 8)
    weight, mask = sparsifier.weights["first.weight"], sparsifier.masks["first.weight"]
    assert sparsifier.nonzero_count() == int(torch.count_nonzero(mask)) == 16
    assert int(torch.count_nonzero(weight)) <= 16 and torch.all(weight[~mask] == 0)


def test_a_weight_tied_to_an_embedding_stays_dense_unless_included_by_name():
    model = TiedModel(nn.Embedding(8, 8))
    extra = nn.Linear(8, 8)
    model.add_module("extra", extra)
    sparsifier = sm.SparseMomentum(model, sgd(model), density=0.25, total_steps=10)
    assert list(sparsifier.weights) == ["extra.weight"]
    assert sparsifier.dense_tensors["first.weight"].startswith("tied to second.weight (Embedding)")
    included = sm.SparseMomentum(
        model, sgd(model), density=0.25, total_steps=10, include=["first.weight"]
    )
    assert list(included.weights) == ["first.weight"]


def test_frozen_layers_are_left_out_and_never_change():
    torch.manual_seed(0)
    model = mlp(10, 20, 10)
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1,
                                momentum=0.9)  # fmt: skip
    for method in (sm.SET, sm.SNIP):
        sparsifier = method(model, optimizer, density=0.3, total_steps=20)
        assert list(sparsifier.weights) == ["2.weight"]
        assert sparsifier.dense_tensors == {"0.weight": "frozen (requires_grad=False)"}
        train_steps(sparsifier, model, 5, 10, 10)
        sparsifier.update_masks()
        assert torch.equal(model[0].weight, frozen)
    model[2].weight.requires_grad_(False)
    with pytest.raises(sm.UserError, match="every Linear, .*, RNNBase weight is frozen"):
        sm.SET(model, optimizer, density=0.3, total_steps=20)


def test_surprises_are_warned_about_by_name():
    model = mlp(100, 50, 2)
    with pytest.warns(UserWarning, match="leaves '2.weight' without a single weight"):
        sm.Static(model, sgd(model), density=0.001)
    sparsifier = sm.SparseMomentum(model, sgd(model), density=0.2, total_steps=3)
    with pytest.warns(UserWarning, match="step 4 is past total_steps=3"):
        train_steps(sparsifier, model, 4, 100, 2)
    attention = nn.Sequential(nn.MultiheadAttention(8, 2))  # both projections are sparse now
    sparsifier = sm.Static(attention, sgd(attention), density=0.5)
    assert list(sparsifier.weights) == ["0.in_proj_weight", "0.out_proj.weight"]


def test_snip_without_a_gradient_is_refused():
    model = mlp(4, 4)
    snip = sm.SNIP(model, sgd(model), density=0.5)
    with pytest.raises(sm.UserError, match="call loss.backward\\(\\) before sparsifier.step\\(\\)"):
        snip.step()
    assert snip.nonzero_count() == 16  # nothing chosen from zero scores
