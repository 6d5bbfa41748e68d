import torch

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
