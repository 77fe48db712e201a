"""The temperature of a lattice read without a trained regressor: match its nearest-neighbour correlation to the
exact one of the periodic ``L x L`` Ising model (Kaufman's solution, :func:`physkernels.physics.ising.exact`).

For ``H = -sum_<ij> s_i s_j`` on an ``L x L`` torus there are two bonds per spin, so the exact energy per spin is
``e(beta) = -2 c(beta)`` with ``c = <s_i s_j>`` over nearest neighbours; ``c`` increases with beta, and
:func:`beta_from_correlation` inverts it by bisection.
"""

from __future__ import annotations

import math

import torch

from ..ising.exact import exact


def nearest_neighbour_correlation(config: torch.Tensor) -> torch.Tensor:
    """``<s_i s_j>`` over the horizontal and vertical nearest-neighbour bonds of each periodic lattice.

    config: ``(..., L, L)`` with entries +-1 (any real values are read as they are). Returns ``(...)`` float64.
    """
    if not isinstance(config, torch.Tensor) or config.dim() < 2 or config.shape[-1] != config.shape[-2]:
        raise ValueError(f"config must be a tensor of square lattices (..., L, L), got {getattr(config, 'shape', config)}")
    s = config.to(torch.float64)
    right = (s * torch.roll(s, 1, dims=-1)).mean((-2, -1))
    down = (s * torch.roll(s, 1, dims=-2)).mean((-2, -1))
    return (right + down) / 2


def exact_correlation(L: int, beta: float) -> float:
    """Exact nearest-neighbour correlation of the periodic ``L x L`` model at ``beta``: ``-energy / 2``."""
    return -exact(L, beta)["energy"] / 2


def beta_from_correlation(correlation: float, L: int, beta_max: float = 2.0, tol: float = 1e-7) -> float:
    """The beta at which the exact ``L x L`` nearest-neighbour correlation equals ``correlation`` (bisection on
    ``[0, beta_max]``); nan outside the range ``[0, c(beta_max)]`` it covers."""
    if not math.isfinite(correlation) or correlation < 0 or correlation > exact_correlation(L, beta_max):
        return float("nan")
    lo, hi = 0.0, beta_max
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if exact_correlation(L, mid) < correlation:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
