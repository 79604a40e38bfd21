"""How data-parallel ranks share an epoch: which samples each takes, and their counts summed.

Given a rank and a world size, the epoch code shards the data itself, and sums with
``torch.distributed`` only when the world is larger than one, so it runs the same with or
without Ray.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def shard(n: int, rank: int, world: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's sample indices for one epoch.

    Every rank draws the same permutation (seeded by epoch) and takes every
    world-th element, cut to an equal length so all ranks run the same number of
    steps, which DDP's collective all-reduce requires.
    """
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[rank::world][: n // world]


def all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
