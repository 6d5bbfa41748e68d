import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsemomentum.core.allocation import allocate, initial_counts, target_nonzeros


def test_allocation_is_proportional_when_nothing_overflows():
    assert allocate(100, [1.0, 3.0], [1000, 1000]) == [25, 75]


def test_overflow_goes_to_layers_with_room_in_proportion():
    # Layer 0 wants 90 but holds 10; the other 90 split 1:4 between the rest.
    assert allocate(100, [9.0, 0.2, 0.8], [10, 1000, 1000]) == [10, 18, 72]


def test_largest_remainder_rounding_keeps_the_total():
    assert allocate(10, [1.0, 1.0, 1.0], [10, 10, 10]) == [4, 3, 3]


def test_zero_weights_fall_back_to_free_room():
    assert allocate(6, [0.0, 0.0], [10, 20]) == [2, 4]


def test_more_than_capacity_is_refused():
    with pytest.raises(ValueError):
        allocate(31, [1.0, 1.0], [10, 20])


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    capacity=st.lists(st.integers(0, 500), min_size=1, max_size=8),
)
def test_allocation_is_exact_and_within_capacity(data, capacity):
    total = data.draw(st.integers(0, sum(capacity)))
    weights = data.draw(st.lists(st.floats(0, 1e6), min_size=len(capacity), max_size=len(capacity)))
    counts = allocate(total, weights, capacity)
    assert sum(counts) == total
    assert all(0 <= c <= cap for c, cap in zip(counts, capacity))


def test_target_rounding_rule_is_half_up_and_at_least_one():
    assert target_nonzeros(0.05, 266200) == 13310
    assert target_nonzeros(0.5, 3) == 2
    assert target_nonzeros(1e-9, 100) == 1


def test_uniform_gives_every_layer_the_density():
    counts = initial_counts("uniform", [(300, 784), (100, 300), (10, 100)], 0.05)
    assert counts == [11760, 1500, 50]


@pytest.mark.parametrize("distribution", ["erdos_renyi", "erk"])
@pytest.mark.parametrize("density", [0.01, 0.05, 0.2, 0.6])
def test_erdos_renyi_totals_are_exact_and_capped(distribution, density):
    shapes = [(300, 784), (100, 300), (10, 100), (50, 20, 5, 5)]
    sizes = [math.prod(s) for s in shapes]
    counts = initial_counts(distribution, shapes, density)
    assert sum(counts) == target_nonzeros(density, sum(sizes))
    assert all(0 <= c <= n for c, n in zip(counts, sizes))


def test_erk_gives_small_layers_higher_density_and_caps_them():
    counts = initial_counts("erk", [(300, 784), (100, 300), (10, 100)], 0.05)
    densities = [c / n for c, n in zip(counts, [235200, 30000, 1000])]
    assert densities[0] < densities[1] < densities[2]
    # ER scale of 784x300 is (784+300)/(784*300); the ratio of densities follows the scales.
    assert densities[1] / densities[0] == pytest.approx(
        ((100 + 300) / 30000) / ((300 + 784) / 235200), rel=1e-3
    )


def test_erk_caps_a_layer_at_density_one_and_spreads_the_surplus():
    counts = initial_counts("erk", [(1000, 1000), (2, 2)], 0.1)
    assert counts[1] == 4
    assert sum(counts) == target_nonzeros(0.1, 1000004)


def test_er_ignores_kernel_size_but_erk_does_not():
    shapes = [(64, 64, 3, 3), (64, 64, 1, 1)]
    er = initial_counts("erdos_renyi", shapes, 0.1)
    erk = initial_counts("erk", shapes, 0.1)
    assert er[0] / 36864 == pytest.approx(er[1] / 4096, rel=1e-2)
    assert erk[0] / 36864 < erk[1] / 4096


def test_equal_overflow_splits_a_full_layers_excess_equally_over_the_layers_with_room():
    # Proportional targets 9, 1, 0; the first layer holds 2, so 7 overflow. Proportional
    # overflow follows the shares (all to the second layer); the reference code's rule splits
    # it equally (3.5 each; the tie on the half goes to the earlier layer).
    assert allocate(10, [0.9, 0.1, 0.0], [2, 10, 10]) == [2, 8, 0]
    assert allocate(10, [0.9, 0.1, 0.0], [2, 10, 10], overflow="equal") == [2, 5, 3]


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(0, 10), st.integers(0, 50)), min_size=1, max_size=6),
    fraction=st.floats(0, 1),
)
def test_equal_overflow_places_exactly_the_total_within_capacity(data, fraction):
    weights, capacity = [w for w, _ in data], [c for _, c in data]
    total = int(fraction * sum(capacity))
    counts = allocate(total, weights, capacity, overflow="equal")
    assert sum(counts) == total and all(0 <= n <= c for n, c in zip(counts, capacity))
