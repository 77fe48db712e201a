"""Shard bags over ``torch.distributed`` ranks (gloo on CPU, nccl on GPUs) and gather the per-bag results.

Rank r of W evaluates the contiguous bags [r B / W, (r + 1) B / W); a bag's numbers depend only on the seed and
its global network indices, so the gathered result equals the single-process one bit for bit.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def bag_range(n_bags: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first bag, number of bags) owned by ``rank``."""
    first = n_bags * rank // world_size
    return first, n_bags * (rank + 1) // world_size - first


def gather_bags(local: torch.Tensor, n_bags: int, world_size: int) -> torch.Tensor:
    """Concatenate every rank's (n_local, n_combos) block in rank order: (n_bags, n_combos) on every rank."""
    widest = max(bag_range(n_bags, r, world_size)[1] for r in range(world_size))
    padded = torch.zeros(widest, local.shape[1], dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    blocks = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(blocks, padded)
    return torch.cat([b[: bag_range(n_bags, r, world_size)[1]] for r, b in enumerate(blocks)])
