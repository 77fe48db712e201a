"""Observables of 2D Ising configurations and the integrated autocorrelation time of their Monte Carlo series.

Conventions (used by every sampler and by :mod:`.exact`): an ``L x L`` periodic lattice of spins
``s = +-1``, coupling ``J = 1``, no field, ``H = - sum_<ij> s_i s_j`` over the ``2 L^2`` bonds to the right and
down neighbours (for ``L = 2`` the two bonds between a pair are both counted, as on the torus of Kaufman's
formula).
"""

from __future__ import annotations

import math

import numpy as np
import torch

BETA_C = 0.5 * math.log(1.0 + math.sqrt(2.0))
"""Critical inverse temperature of the infinite square lattice, ln(1 + sqrt 2) / 2 = 0.44068679..."""


def _as_float(configs: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(configs)
    if x.dim() < 2:
        raise ValueError(f"configs must have shape (..., L, L), got {tuple(x.shape)}")
    return x.to(torch.float64)


def energy_per_spin(configs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``E / N = -(1/L^2) sum_{x,y} s_{x,y} (s_{x+1,y} + s_{x,y+1})`` for configs of shape ``(..., L, L)``."""
    s = _as_float(configs)
    bonds = s * torch.roll(s, 1, dims=-1) + s * torch.roll(s, 1, dims=-2)
    return -bonds.mean(dim=(-2, -1))


def magnetization_per_spin(configs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``m = (1/L^2) sum s`` for configs of shape ``(..., L, L)``."""
    return _as_float(configs).mean(dim=(-2, -1))


def integrated_autocorrelation_time(series: np.ndarray | torch.Tensor, c: float = 6.0) -> float:
    """Integrated autocorrelation time of independent equilibrium chains, in units of the series step.

    ``series`` has shape ``(n_chains, T)`` (or ``(T,)``). The normalised autocorrelation ``rho(t)`` is the
    autocovariance averaged over chains (about the common mean of all chains), divided by its value at ``t = 0``;
    ``tau = 1/2 + sum_{t=1}^{W} rho(t)`` with Sokal's automatic window: the smallest ``W >= c tau(W)``. With this
    convention an uncorrelated series has ``tau = 1/2`` and the variance of a mean of ``T`` steps is
    ``2 tau var / T``. A constant series returns ``0.5``.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"series must have shape (n_chains, T) with T >= 2, got {x.shape}")
    n_chains, length = x.shape
    x = x - x.mean()
    n_fft = 1 << (2 * length - 1).bit_length()
    spectrum = np.fft.rfft(x, n=n_fft, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=n_fft, axis=1)[:, :length].sum(axis=0)
    acov /= n_chains * (length - np.arange(length))
    if acov[0] <= 0.0:
        return 0.5
    rho = acov / acov[0]
    tau = 0.5
    for window in range(1, length):
        tau += rho[window]
        if window >= c * tau:
            break
    return float(max(tau, 0.5))


def mean_and_error(series: np.ndarray | torch.Tensor, tau: float | None = None) -> tuple[float, float]:
    """Mean of an equilibrium series ``(n_chains, T)`` and its standard error ``sqrt(2 tau var / (n_chains T))``.

    ``tau`` defaults to :func:`integrated_autocorrelation_time` of the series.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if tau is None:
        tau = integrated_autocorrelation_time(x)
    return float(x.mean()), float(math.sqrt(2.0 * tau * x.var() / x.size))
