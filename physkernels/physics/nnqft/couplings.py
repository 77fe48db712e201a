"""Couplings u4, u6 (Eq. 3.6), their closed-form leg integrals, the sigma_w flow fit (Eq. 4.6), and the exact
finite-width 4-point deviation of the Gauss-net.

Leg integral (Gauss-net, any d_in; derived by completing the square, sum_i |x - x_i|^2 = n |x - xbar|^2 +
sum_i |x_i|^2 - n |xbar|^2):

    I_n(x_1..x_n) = int d^d x prod_i K_W(x, x_i)
                  = sigma_w^{2n} (2 pi d / (n sigma_w^2))^{d/2} exp(-sigma_w^2 / (2 d) (sum_i |x_i|^2 - |sum_i x_i|^2 / n)).

u4(x_1..x_4) = -Delta G^(4) / I_4 (Eq. 3.6). The analogue for six legs uses the connected 6-point deviation
(the disconnected pieces K x Delta G^(4) removed): u6 = -(Delta G^(6) - sum_{15 pair|quad} K_pair Delta G^(4)_quad) / I_6.
Flow (Eq. 4.6): log |u4| = (4 - d) log sigma_w + c; log |u6| = (6 - 2d) log sigma_w + c.

Exact finite N (Gauss-net): f = b1 + sum_j W1_j g_j with independent neurons, so Delta G^(4) equals the 4th joint
cumulant, N times one neuron's: (sigma_w^4 / N) (3 E[g_1 g_2 g_3 g_4] - sum_{3 pairings} E[g_a g_b] E[g_c g_d]), with
E[prod_{a in S} g_a] = exp(Var(sum_a u_a) / 2 - sum_a (sigma_b^2 + sigma_w^2 |x_a|^2 / d)),
Var(sum_a u_a) = sigma_w^2 |sum_a x_a|^2 / d + |S|^2 sigma_b^2.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from .green import GreenFunctions
from .network import as_points


def leg_integral(legs, sigma_w: float) -> torch.Tensor:
    """I_n = int d^d x prod_i K_W(x, x_i) for leg points ``legs`` (..., n, d): shape (...)."""
    legs = torch.as_tensor(legs, dtype=torch.float64)
    if legs.dim() < 2:
        raise ValueError(f"legs must have shape (..., n_legs, d_in), got {tuple(legs.shape)}")
    if sigma_w <= 0:
        raise ValueError(f"sigma_w must be > 0, got {sigma_w}")
    n, d = legs.shape[-2], legs.shape[-1]
    spread = (legs * legs).sum((-1, -2)) - (legs.sum(-2) ** 2).sum(-1) / n
    return sigma_w ** (2 * n) * (2 * math.pi * d / (n * sigma_w**2)) ** (d / 2) * torch.exp(
        -sigma_w**2 * spread / (2 * d))


def _legs(green: GreenFunctions, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = green.order(n)
    members = green.table.members[rows][:, :n].long()
    return rows, green.points[members]  # (n_combos_n,), (n_combos_n, n, d)


def _require_gauss(green: GreenFunctions) -> None:
    if green.law.activation != "gauss":
        raise ValueError(f"the couplings are defined for the Gauss-net (translation-invariant kernel), "
                         f"got activation {green.law.activation!r}")


def u4(green: GreenFunctions) -> torch.Tensor:
    """u4 per bag and 4-point combo (Eq. 3.6): (n_bags, n_combos_4)."""
    _require_gauss(green)
    rows, legs = _legs(green, 4)
    return -(green.per_bag[:, rows] - green.gaussian[rows]) / leg_integral(legs, green.law.sigma_w)


def _six_leg_disconnected_index(green: GreenFunctions, rows: torch.Tensor):
    """For each 6-point combo and each of its 15 (pair | quad) splits: the pair's point indices and the quad's
    column among the 4-point combos. Shapes (n_combos_6, 15)."""
    rows4 = green.order(4)
    col4 = {green.table.combos[r]: i for i, r in enumerate(rows4.tolist())}
    pair_a, pair_b, quad = [], [], []
    for row in rows.tolist():
        combo = green.table.combos[row]
        splits = list(itertools.combinations(range(6), 2))
        pair_a.append([combo[a] for a, _ in splits])
        pair_b.append([combo[b] for _, b in splits])
        quad.append([col4[tuple(sorted(combo[i] for i in range(6) if i not in (a, b)))] for a, b in splits])
    return rows4, torch.tensor(pair_a), torch.tensor(pair_b), torch.tensor(quad)


def u6(green: GreenFunctions) -> torch.Tensor:
    """Connected six-leg coupling per bag and 6-point combo: (n_bags, n_combos_6) (see module docstring)."""
    _require_gauss(green)
    rows, legs = _legs(green, 6)
    rows4, pair_a, pair_b, quad = _six_leg_disconnected_index(green, rows)
    delta4 = green.per_bag[:, rows4] - green.gaussian[rows4]  # (n_bags, n_combos_4)
    pts, law = green.points, green.law
    k = law.sigma_b**2 + law.sigma_w**2 * torch.exp(-law.sigma_w**2 * torch.cdist(pts, pts) ** 2 / (2 * pts.shape[1]))
    disconnected = (k[pair_a, pair_b] * delta4[:, quad]).sum(-1)  # (n_bags, n_combos_6)
    connected = green.per_bag[:, rows] - green.gaussian[rows] - disconnected
    return -connected / leg_integral(legs, law.sigma_w)


def exact_four_point_deviation(points, combos, width: int, sigma_w: float, sigma_b: float) -> torch.Tensor:
    """Exact Delta G^(4) of the Gauss-net at finite width for each 4-tuple of point indices: (n_combos,)."""
    pts = as_points(points)
    idx = torch.as_tensor(combos, dtype=torch.int64).reshape(-1, 4)
    d = pts.shape[1]
    x = pts[idx]  # (C, 4, d)
    norm = sigma_b**2 + sigma_w**2 * (x * x).sum(-1) / d  # (C, 4)

    def moment(sel):
        s = x[:, sel].sum(1)
        var = sigma_w**2 * (s * s).sum(-1) / d + len(sel) ** 2 * sigma_b**2
        return torch.exp(var / 2 - norm[:, sel].sum(1))

    pairs = sum(moment([a, b]) * moment([c, e]) for (a, b), (c, e) in (((0, 1), (2, 3)), ((0, 2), (1, 3)),
                                                                       ((0, 3), (1, 2))))
    return sigma_w**4 / width * (3 * moment([0, 1, 2, 3]) - pairs)


def exact_u4(green: GreenFunctions) -> torch.Tensor:
    """u4 predicted by the exact finite-width Delta G^(4), per 4-point combo: (n_combos_4,)."""
    _require_gauss(green)
    rows, legs = _legs(green, 4)
    combos = [green.table.combos[r] for r in rows.tolist()]
    delta = exact_four_point_deviation(green.points, combos, green.law.width, green.law.sigma_w, green.law.sigma_b)
    return -delta / leg_integral(legs, green.law.sigma_w)


def predicted_slope(legs: int, d_in: int) -> float:
    """Slope of log |u_legs| against log sigma_w from Eq. 4.6: 4 - d (legs = 4), 6 - 2 d (legs = 6)."""
    if legs not in (4, 6):
        raise ValueError(f"legs must be 4 or 6, got {legs}")
    return float(4 - d_in) if legs == 4 else float(6 - 2 * d_in)


@dataclass
class PowerLawFit:
    """log |y| = slope log x + intercept, weighted least squares; ``slope_err`` is the 1-sigma error."""

    slope: float
    intercept: float
    slope_err: float
    chi2_per_dof: float


def fit_power_law(x, y, y_err) -> PowerLawFit:
    """Fit log |y| against log x with weights 1 / (y_err / |y|)^2 (errors propagated to the log)."""
    x, y, y_err = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (x, y, y_err))
    if not (x.numel() == y.numel() == y_err.numel()) or x.numel() < 3:
        raise ValueError("x, y and y_err must have the same length >= 3")
    if (x <= 0).any() or (y == 0).any():
        raise ValueError("fit_power_law needs x > 0 and y != 0")
    lx, ly = x.log(), y.abs().log()
    sigma = (y_err / y.abs()).clamp_min(1e-12)
    w = 1 / sigma**2
    design = torch.stack([lx, torch.ones_like(lx)], 1)
    slope, intercept = torch.linalg.lstsq(design * w.sqrt()[:, None], (ly * w.sqrt())[:, None]).solution[:, 0].tolist()
    cov = torch.linalg.inv(design.T @ (w[:, None] * design))
    resid = ly - slope * lx - intercept
    chi2 = float((w * resid**2).sum()) / max(1, x.numel() - 2)
    return PowerLawFit(slope, intercept, math.sqrt(float(cov[0, 0]) * max(1.0, chi2)), chi2)
