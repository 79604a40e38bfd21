"""Random rotation, shift and zoom (the seeds' augmentation), applied to whole batches.

One affine matrix is drawn per sample and all of them are applied with a single
``affine_grid``/``grid_sample`` call on the batch's device. That costs almost
nothing next to the forward pass, whereas per-image PIL transforms would make
the data loader, not the model, the bottleneck on a 2-core machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentRanges:
    """How far to move each sample; the defaults are ``TrainConfig``'s (rotation, shift, zoom)."""

    rotation: float  # degrees, drawn uniformly from [-rotation, rotation]
    shift: float  # fraction of the image side, per axis
    zoom: float  # scale drawn from [1 - zoom, 1 + zoom]


def augment(x: torch.Tensor, ranges: AugmentRanges, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return ``x`` (N, C, H, W, background 0) with an independent random affine per sample."""
    n = x.shape[0]

    def uniform(*shape):  # in [-1, 1)
        return torch.rand(*shape, generator=generator, device=x.device) * 2 - 1

    angle = uniform(n) * math.radians(ranges.rotation)
    scale = 1 + uniform(n) * ranges.zoom
    shift = uniform(n, 2) * ranges.shift * 2  # affine_grid coordinates span [-1, 1]: 2 units per side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
