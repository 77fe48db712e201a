"""Gaussian (free-theory) expectations G0^(n) by Wick's theorem (Eq. 2.5).

For a zero-mean Gaussian field with covariance K, E0[f(x_1) ... f(x_n)] is the sum over the (n - 1)!! perfect
matchings of the n points of the product of K over the matched pairs (the hafnian of K restricted to the combo);
it vanishes for odd n.
"""

from __future__ import annotations

import torch

from .combos import ComboTable
from .network import NetworkLaw, as_points, kernel


def _hafnian(cov: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Sum over perfect matchings of prod cov[pair] for each row of point indices ``idx`` (n_rows, m)."""
    m = idx.shape[1]
    if m == 0:
        return torch.ones(idx.shape[0], dtype=cov.dtype, device=cov.device)
    if m % 2:
        return torch.zeros(idx.shape[0], dtype=cov.dtype, device=cov.device)
    total = torch.zeros(idx.shape[0], dtype=cov.dtype, device=cov.device)
    for k in range(1, m):
        rest = torch.cat([idx[:, 1:k], idx[:, k + 1:]], dim=1)
        total = total + cov[idx[:, 0], idx[:, k]] * _hafnian(cov, rest)
    return total


def wick_expectations(cov: torch.Tensor, table: ComboTable) -> torch.Tensor:
    """G0 of every combo of ``table`` for the covariance ``cov`` (n_points, n_points): shape (n_combos,)."""
    out = torch.empty(table.n_combos, dtype=cov.dtype, device=cov.device)
    for n in range(1, table.max_order + 1):
        rows = table.of_order(n)
        idx = table.members[rows][:, :n].long().to(cov.device)
        out[rows.to(cov.device)] = _hafnian(cov, idx)
    return out


def gaussian_expectation(points, combo, sigma_w: float = 1.0, sigma_b: float = 1.0,
                         activation: str = "gauss") -> float:
    """G0^(n)(x_{i_1}, ..., x_{i_n}) for the point indices ``combo`` (repeats allowed) under the kernel K."""
    pts = as_points(points)
    NetworkLaw(1, float(sigma_w), float(sigma_b), activation)
    combo = list(combo)
    if not all(isinstance(i, int) and 0 <= i < pts.shape[0] for i in combo):
        raise ValueError(f"combo must list point indices in [0, {pts.shape[0]}), got {combo}")
    cov = kernel(pts, sigma_w, sigma_b, activation)
    return float(_hafnian(cov, torch.tensor([combo], dtype=torch.int64).reshape(1, len(combo)))[0])
