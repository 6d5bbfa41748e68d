import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsemomentum.core.selection import drop_smallest, grow_largest, random_mask


def test_drop_removes_the_smallest_active_scores_only():
    mask = torch.tensor([True, True, False, True, True])
    scores = torch.tensor([0.5, 0.1, 0.0, 0.3, 0.9])  # the missing position has the smallest score
    assert drop_smallest(mask, scores, 2).tolist() == [True, False, False, False, True]


def test_grow_adds_the_largest_missing_scores_only():
    mask = torch.tensor([True, False, False, False, True])
    scores = torch.tensor([9.0, 0.2, 0.7, 0.5, 8.0])  # active positions have the largest scores
    assert grow_largest(mask, scores, 2).tolist() == [True, False, True, True, True]


def test_counts_of_zero_change_nothing():
    mask = torch.tensor([[True, False]])
    assert torch.equal(drop_smallest(mask, torch.ones(1, 2), 0), mask)
    assert torch.equal(grow_largest(mask, torch.ones(1, 2), 0), mask)


def test_random_mask_has_exactly_the_count():
    generator = torch.Generator().manual_seed(3)
    mask = random_mask(torch.Size([7, 13]), 20, generator, torch.device("cpu"))
    assert mask.shape == (7, 13) and mask.dtype == torch.bool and int(mask.sum()) == 20


def reference_grow(mask, scores, count):
    """The k largest missing scores by a full sort: what grow_largest must choose."""
    candidates = torch.where(mask, torch.tensor(float("-inf")), scores).flatten()
    grown = mask.clone().flatten()
    grown[torch.sort(candidates, descending=True, stable=True).indices[:count]] = True
    return grown.view_as(mask)


@settings(max_examples=25, deadline=None)
@given(
    density=st.floats(0.0, 0.9),
    fraction=st.floats(0.0, 0.3),
    active_scale=st.floats(0.0, 100.0),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
)
def test_grow_on_large_layers_is_exact_whichever_path_it_takes(
    density, fraction, active_scale, seed, ties
):
    """Layers above 65,536 positions take the sampled-threshold path unless it cannot be sure."""
    generator = torch.Generator().manual_seed(seed)
    shape = (300, 400)
    mask = torch.rand(shape, generator=generator) < density
    scores = torch.rand(shape, generator=generator)
    # many equal scores (zero momentum of never-touched weights): ties only at the boundary matter
    if ties:
        scores = torch.where(
            torch.rand(shape, generator=generator) < 0.5, torch.zeros(shape), scores
        )
    scores = torch.where(
        mask, scores * active_scale, scores
    )  # active momenta are often the largest
    count = int(fraction * int((~mask).sum()))
    grown = grow_largest(mask, scores, count)
    assert int(grown.sum()) == int(mask.sum()) + count and bool((grown | ~mask).all())
    new = grown & ~mask
    if count:  # the same set as a full sort, up to ties at the k-th score
        kth = scores[reference_grow(mask, scores, count) & ~mask].min()
        assert bool((scores[new] >= kth).all())
        assert int((scores[~mask] > kth).sum()) <= count and bool(new[(scores > kth) & ~mask].all())


@settings(max_examples=25, deadline=None)
@given(density=st.floats(0.01, 1.0), fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_drop_is_exact_on_large_layers(density, fraction, seed):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(300, 400, generator=generator) < density
    scores = torch.rand(300, 400, generator=generator)
    count = int(fraction * int(mask.sum()))
    kept = drop_smallest(mask, scores, count)
    dropped = mask & ~kept
    assert int(dropped.sum()) == count and not bool((kept & ~mask).any())
    if count and bool(kept.any()):
        assert float(scores[dropped].max()) <= float(scores[kept].min())
