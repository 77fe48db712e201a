"""Local Shannon entropy of spin lattices (Shukla & Thakur, Sec. III C, Fig. 13-14).

For every site the ``size x size`` neighbourhood centred on it is histogrammed (spin up / spin down) and its
Shannon entropy in bits is ``H = -p log2 p - (1 - p) log2 (1 - p)``, with ``p`` the fraction of up spins in the
window (0 log 0 = 0). The paper used scikit-image's rank entropy filter with a 3x3 footprint; here the windows wrap
around periodically by default (the lattices are tori), or are cut at the border (``boundary="open"``: only sites
inside the lattice are counted, as scikit-image does). A site is "up" when its value is > 0, so network outputs
can be passed directly (they are read as ``sign`` with 0 counted as down).
"""

from __future__ import annotations

import math

import torch

BOUNDARIES = ("periodic", "open")


def _window_sum(x: torch.Tensor, size: int, boundary: str) -> torch.Tensor:
    """Sum of ``x`` over the ``size x size`` window centred on every site of the last two dimensions."""
    half = size // 2
    if boundary == "periodic":
        total = torch.zeros_like(x)
        for dr in range(-half, half + 1):
            for dc in range(-half, half + 1):
                total += torch.roll(x, shifts=(dr, dc), dims=(-2, -1))
        return total
    rows, cols = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (half, half, half, half))
    total = torch.zeros_like(x)
    for dr in range(size):
        for dc in range(size):
            total += padded[..., dr:dr + rows, dc:dc + cols]
    return total


def local_entropy(config: torch.Tensor, size: int = 3, boundary: str = "periodic") -> torch.Tensor:
    """Shannon entropy (bits) of the ``size x size`` neighbourhood of every site; shape ``(..., H, W)`` kept.

    ``config``: ``(..., H, W)`` lattices (spins, or real outputs read as up when > 0). ``size``: odd window width.
    """
    if not isinstance(config, torch.Tensor):
        raise TypeError(f"config must be a torch.Tensor, got {type(config).__name__}")
    if config.dim() < 2:
        raise ValueError(f"config must have shape (..., H, W), got {tuple(config.shape)}")
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd positive integer, got {size!r}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if boundary == "periodic" and min(config.shape[-2:]) < size:
        raise ValueError(f"periodic windows of size {size} need lattices at least that wide, got {tuple(config.shape)}")
    up = (config > 0).to(torch.float64)
    n_up = _window_sum(up, size, boundary)
    n_all = _window_sum(torch.ones_like(up), size, boundary)
    p = n_up / n_all
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)) / math.log(2.0)


def lattice_entropy(config: torch.Tensor, size: int = 3, boundary: str = "periodic") -> torch.Tensor:
    """Local entropy averaged over the sites of each lattice: ``(..., H, W) -> (...)`` (the per-lattice value)."""
    return local_entropy(config, size, boundary).mean(dim=(-2, -1))
