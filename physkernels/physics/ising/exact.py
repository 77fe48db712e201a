"""Exact results for the 2D Ising model (J = 1, no field; conventions of :mod:`.observables`).

* :func:`exact`: Kaufman's (1949) partition function of the finite ``L x L`` torus,

      Z = 1/2 (2 sinh 2K)^{L^2/2} (Z_1 + Z_2 + Z_3 + Z_4),      K = beta,
      Z_1 = prod_{r=0}^{L-1} 2 cosh(L g_{2r+1} / 2),   Z_2 = prod 2 sinh(L g_{2r+1} / 2),
      Z_3 = prod_{r=0}^{L-1} 2 cosh(L g_{2r} / 2),     Z_4 = prod 2 sinh(L g_{2r} / 2),
      cosh g_k = cosh 2K coth 2K - cos(pi k / L)  (g_k > 0, k >= 1),   g_0 = 2K + ln tanh K  (signed),

  evaluated in log space (each product as a sum of ``log|2 cosh|`` / ``log|2 sinh|`` with its sign, the four
  terms combined by a signed log-sum-exp) so it holds for any L. Energy and specific heat per spin are its
  exact first and second derivatives, taken by float64 automatic differentiation of that expression:
  ``u = -(1/N) d lnZ / dK``, ``c = K^2 (1/N) d^2 lnZ / dK^2``. For ``K > 10`` the leading low-temperature
  expansion (two ground states + ``N`` single flips) is exact to double precision and is used instead.
* :func:`onsager_energy`: the infinite-lattice energy per spin,
  ``u = -coth 2K [1 + (2/pi)(2 tanh^2 2K - 1) K(k)]``, ``k = 2 sinh 2K / cosh^2 2K``, with the complete
  elliptic integral ``K(k)`` from the arithmetic-geometric mean (:func:`elliptic_k`).
* :func:`spontaneous_magnetization`: Yang's ``(1 - sinh(2K)^-4)^(1/8)`` above ``K_c``, else 0.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from .observables import BETA_C


LOW_TEMPERATURE_BETA = 10.0
"""Above this beta, ``exact`` uses the low-temperature expansion (``cosh 4K`` would overflow near K = 177)."""


def _check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)):
        raise TypeError(f"beta must be a real number, got {beta!r}")
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be finite and >= 0, got {beta}")
    return float(beta)


def _check_L(L) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"L must be an integer >= 2, got {L!r}")
    return int(L)


def _log_abs_2cosh(x: torch.Tensor) -> torch.Tensor:
    return x.abs() + torch.log1p(torch.exp(-2.0 * x.abs()))


def _log_abs_2sinh(x: torch.Tensor) -> torch.Tensor:
    return x.abs() + torch.log(-torch.expm1(-2.0 * x.abs()))


def kaufman_log_partition(L: int, K: torch.Tensor) -> torch.Tensor:
    """``ln Z`` of the ``L x L`` torus at coupling ``K > 0`` (float64 tensor, differentiable in ``K``)."""
    k = torch.arange(2 * L, dtype=torch.float64)
    two_k = 2.0 * K
    cosh_g = (torch.cosh(two_k) / torch.tanh(two_k) - torch.cos(math.pi * k / L))[1:]
    # acosh c = ln c + ln(1 + sqrt(1 - 1/c^2)): also differentiable where c^2 overflows (large K)
    gamma = torch.log(cosh_g) + torch.log1p(torch.sqrt((1.0 - cosh_g**-2).clamp_min(0.0)))
    gamma0 = (two_k + torch.log(torch.tanh(K))).reshape(1)
    gamma = torch.cat([gamma0, gamma])
    half = 0.5 * L * gamma
    odd, even = half[1::2], half[0::2]
    logs = torch.stack([_log_abs_2cosh(odd).sum(), _log_abs_2sinh(odd).sum(), _log_abs_2cosh(even).sum()])
    # Z_4 holds the factor 2 sinh(L g_0 / 2), which changes sign at K_c: keep it linear while it is small so
    # that ln Z stays smooth (and twice differentiable) through K_c.
    x0 = even[0]
    rest = _log_abs_2sinh(even[1:]).sum()
    top = torch.maximum(logs.max(), rest + x0.abs()).detach()
    if abs(x0.item()) > 30.0:
        z4 = torch.sign(x0) * torch.exp(_log_abs_2sinh(x0) + rest - top)
    else:
        z4 = 2.0 * torch.sinh(x0) * torch.exp(rest - top)
    total = torch.exp(logs - top).sum() + z4
    return math.log(0.5) + 0.5 * L * L * torch.log(2.0 * torch.sinh(two_k)) + top + torch.log(total)


def exact(L: int, beta: float) -> dict[str, float]:
    """Exact ``logZ``, ``energy`` and ``specific_heat`` (per spin) of the ``L x L`` periodic Ising model.

    ``beta = 0`` is the trivial limit ``logZ = L^2 ln 2``, ``energy = 0``, ``specific_heat = 0``.
    """
    L, beta = _check_L(L), _check_beta(beta)
    n_sites = L * L
    if beta == 0.0:
        return {"L": L, "beta": 0.0, "logZ": n_sites * math.log(2.0), "energy": 0.0, "specific_heat": 0.0}
    if beta > LOW_TEMPERATURE_BETA:
        # two ground states plus N single flips (dE = 8); further terms are below double precision here
        x = n_sites * math.exp(-8.0 * beta)
        return {"L": L, "beta": beta, "logZ": math.log(2.0) + 2.0 * n_sites * beta + math.log1p(x),
                "energy": -2.0 + 8.0 * x / (1.0 + x) / n_sites,
                "specific_heat": 64.0 * beta * beta * x / (1.0 + x) ** 2 / n_sites}
    K = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    log_z = kaufman_log_partition(L, K)
    (d1,) = torch.autograd.grad(log_z, K, create_graph=True)
    (d2,) = torch.autograd.grad(d1, K)
    return {"L": L, "beta": beta, "logZ": log_z.item(), "energy": -d1.item() / n_sites,
            "specific_heat": beta * beta * d2.item() / n_sites}


def brute_force(L: int, beta: float) -> dict[str, float]:
    """The same quantities by enumerating all ``2^(L^2)`` configurations (``L <= 4``): the test reference."""
    L, beta = _check_L(L), _check_beta(beta)
    if L > 4:
        raise ValueError(f"brute force enumeration is limited to L <= 4, got L={L}")
    n_sites = L * L
    bits = np.array(list(itertools.product((-1, 1), repeat=n_sites)), dtype=np.int64).reshape(-1, L, L)
    energy = -(bits * np.roll(bits, 1, -1) + bits * np.roll(bits, 1, -2)).sum(axis=(-2, -1)).astype(np.float64)
    log_w = -beta * energy
    top = log_w.max()
    w = np.exp(log_w - top)
    z = w.sum()
    mean_e = (w * energy).sum() / z
    var_e = (w * energy**2).sum() / z - mean_e**2
    return {"L": L, "beta": beta, "logZ": float(top + math.log(z)), "energy": float(mean_e / n_sites),
            "specific_heat": float(beta * beta * var_e / n_sites)}


def elliptic_k(k: float) -> float:
    """Complete elliptic integral of the first kind of modulus ``k`` (``0 <= k < 1``): ``pi / (2 AGM(1, k'))``."""
    a, b = 1.0, math.sqrt((1.0 - k) * (1.0 + k))
    for _ in range(64):  # quadratic convergence: a handful of rounds; the cap guards last-ulp oscillation
        if abs(a - b) <= 4e-16 * a:
            break
        a, b = 0.5 * (a + b), math.sqrt(a * b)
    return math.pi / (a + b)


def onsager_energy(beta: float) -> float:
    """Energy per spin of the infinite square lattice (Onsager 1944)."""
    K = _check_beta(beta)
    if K == 0.0:
        return 0.0
    k = 2.0 * math.sinh(2 * K) / math.cosh(2 * K) ** 2
    if k >= 1.0:  # K = K_c: the log singularity of K(k) is multiplied by 2 tanh^2 2K - 1 = 0
        return -math.sqrt(2.0)
    elliptic = elliptic_k(k)
    return -(1.0 / math.tanh(2 * K)) * (1.0 + (2.0 / math.pi) * (2.0 * math.tanh(2 * K) ** 2 - 1.0) * elliptic)


def spontaneous_magnetization(beta: float) -> float:
    """Spontaneous magnetisation per spin of the infinite lattice (Yang 1952): 0 for ``beta <= beta_c``."""
    K = _check_beta(beta)
    if K <= BETA_C:
        return 0.0
    return (1.0 - math.sinh(2 * K) ** -4) ** 0.125
