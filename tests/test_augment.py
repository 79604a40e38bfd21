"""Batched augmentation keeps shapes, sample order (so labels still match) and ink."""

from __future__ import annotations

import torch

from hdr_dist.data.augment import AugmentRanges, augment
from hdr_dist.data.datasets import load


def digits(n=64):
    ds = load("mnist", limit_test=n)
    return torch.from_numpy(ds.test.x[:n]).float().div(255).unsqueeze(1)


def test_identity_when_ranges_are_zero():
    x = digits()
    assert torch.allclose(augment(x, AugmentRanges(0, 0, 0)), x, atol=1e-5)


def test_shapes_and_ink_are_kept():
    x = digits()
    y = augment(x, AugmentRanges(15, 0.1, 0.1), torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert not torch.allclose(y, x, atol=1e-3)
    ratio = y.flatten(1).sum(1) / x.flatten(1).sum(1)  # zoom scales ink by 0.81..1.21; nothing is lost
    assert ratio.min() > 0.6
    assert ratio.max() < 1.5


def test_samples_stay_in_order_so_labels_still_match():
    """Squares of sides 2..12: any rotation, shift or ±5 % zoom keeps their ink ranking."""
    x = torch.zeros(6, 1, 28, 28)
    for i, side in enumerate(range(2, 14, 2)):
        lo = 14 - side // 2
        x[i, 0, lo : lo + side, lo : lo + side] = 1
    order = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    for seed in range(5):
        y = augment(x[order], AugmentRanges(15, 0.1, 0.05), torch.Generator().manual_seed(seed))
        assert torch.equal(y.flatten(1).sum(1).argsort(), x[order].flatten(1).sum(1).argsort())


def test_draws_differ_per_sample_and_are_seeded():
    x = digits(1).repeat(8, 1, 1, 1)
    y1 = augment(x, AugmentRanges(10.0, 0.1, 0.1), torch.Generator().manual_seed(3))
    y2 = augment(x, AugmentRanges(10.0, 0.1, 0.1), torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2)
    assert len({round(v, 4) for v in y1.flatten(1).sum(1).tolist()}) == 8
