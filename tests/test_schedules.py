import pytest

from sparsemomentum.core.schedules import prune_rate_at


def test_cosine_starts_at_initial_halves_midway_and_ends_at_final():
    assert prune_rate_at("cosine", 0.5, 0.0, 0, 1000) == pytest.approx(0.5)
    assert prune_rate_at("cosine", 0.5, 0.0, 500, 1000) == pytest.approx(0.25)
    assert prune_rate_at("cosine", 0.5, 0.0, 250, 1000) == pytest.approx(0.25 * (1 + 2**-0.5))
    assert prune_rate_at("cosine", 0.5, 0.005, 1000, 1000) == pytest.approx(0.005)


def test_linear_goes_in_a_straight_line():
    assert prune_rate_at("linear", 0.5, 0.1, 250, 1000) == pytest.approx(0.4)


def test_constant_never_changes():
    assert prune_rate_at("constant", 0.3, 0.0, 999, 1000) == 0.3


def test_schedule_is_clamped_after_the_end():
    assert prune_rate_at("cosine", 0.5, 0.0, 5000, 1000) == pytest.approx(0.0)
