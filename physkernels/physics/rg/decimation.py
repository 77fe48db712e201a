"""Decimation renormalisation of the 2D Ising model (Shukla & Thakur, Sec. II A and II D, Fig. 2 and 6).

One decimation step removes the red sites of a checkerboard colouring and keeps the blue ones (Fig. 2). Lattices are
stored the way the paper linearises them (NumPy row-major order):

* a square lattice ``(..., L, L)``: site ``(r, c)`` has flat index ``i = L r + c``. The blue sites are those with
  ``r + c`` even, i.e. ``floor(i / L) + i`` even (Eq. 7 with ``L = 32``).
* the lattice left after one decimation is a square lattice rotated by 45 degrees with spacing sqrt(2). It is
  packed as ``(..., L, L // 2)``: row ``r`` holds the blue sites of row ``r`` in column order, so packed entry
  ``(r, k)`` is the original site ``(r, 2k + r mod 2)`` ("32x32 to 32x16", Fig. 4). Its nearest neighbours are the
  original diagonal neighbours ``(r +- 1, c +- 1)``.
* decimating the rotated lattice keeps the sites with ``r`` even (then ``c`` is even too), i.e. the packed rows
  with ``floor(i / (L/2))`` even (Eq. 8 with ``L/2 = 16``), giving the square lattice ``(..., L/2, L/2)`` of the
  original sites ``(2 r', 2 c')`` ("32x16 to 16x16").

Summing out each red spin (Eq. 3-4) and keeping only the pair couplings gives the approximate recursion (Eq. 5)
``beta' = 3/8 ln cosh(4 beta)`` with a non-trivial (unstable) fixed point ``beta* ~= 0.5070`` (paper: 0.505);
the exact critical point is ``beta_c = ln(1 + sqrt 2) / 2 ~= 0.4407``.
"""

from __future__ import annotations

import math

import torch

BETA_C = 0.5 * math.log(1.0 + math.sqrt(2.0))


def _check_lattice(config: torch.Tensor) -> tuple[int, int]:
    if not isinstance(config, torch.Tensor):
        raise TypeError(f"config must be a torch.Tensor, got {type(config).__name__}")
    if config.dim() < 2:
        raise ValueError(f"config must have shape (..., rows, cols), got shape {tuple(config.shape)}")
    return config.shape[-2], config.shape[-1]


def decimate(config: torch.Tensor) -> torch.Tensor:
    """One decimation step of Fig. 2 on a lattice (or a batch of lattices).

    * ``(..., L, L)`` square lattice, ``L`` even -> ``(..., L, L // 2)`` packed rotated lattice of the blue sites
      ``r + c`` even (row ``r`` keeps columns ``c = 2k + r mod 2``).
    * ``(..., L, L // 2)`` packed rotated lattice, ``L`` even -> ``(..., L // 2, L // 2)`` square lattice of the
      sites with even ``r`` (original sites ``(2 r', 2 c')``).

    ``decimate(decimate(x))`` equals ``x[..., ::2, ::2]``. Works for any dtype (spins, probabilities, outputs).
    The result equals the linear map of the hard-coded weights: ``decimate(x).flatten(-2) ==
    x.flatten(-2) @ decimation_weights(...)`` (Eq. 7, 8).
    """
    rows, cols = _check_lattice(config)
    if rows % 2:
        raise ValueError(f"decimation needs an even lattice size L, got config of shape {tuple(config.shape)}")
    if cols == rows:
        # Even rows keep even columns, odd rows keep odd columns.
        even = config[..., 0::2, 0::2]
        odd = config[..., 1::2, 1::2]
        return torch.stack((even, odd), dim=-2).reshape(*config.shape[:-2], rows, rows // 2)
    if 2 * cols == rows:
        return config[..., 0::2, :]
    raise ValueError(
        "config must be a square lattice (..., L, L) or a once-decimated packed lattice (..., L, L // 2) with even L;"
        f" got shape {tuple(config.shape)}"
    )


def decimation_weights(L: int, step: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Hard-coded decimation weight matrix of the HCG nets (Eq. 7 for ``step=1``, Eq. 8 for ``step=2``).

    ``step=1``: ``W1`` of shape ``(L^2, L^2 / 2)`` with ``W1[i, j] = 1`` iff input site ``i`` (``floor(i / L) + i``
    even) is the ``j``-th kept site. ``step=2``: ``W2`` of shape ``(L^2 / 2, L^2 / 4)`` with ``W2[i, j] = 1`` iff
    packed site ``i`` (``floor(i / (L/2))`` even) is the ``j``-th kept site. A row vector ``y = x W`` (Eq. 6) is
    then exactly ``decimate`` of the linearised lattice ``x``.
    """
    if not isinstance(L, int) or L < 2 or L % 2:
        raise ValueError(f"L must be an even integer >= 2, got {L!r}")
    if step == 1:
        n_in, i = L * L, torch.arange(L * L)
        kept = i[((i // L) + i) % 2 == 0]
    elif step == 2:
        n_in, i = L * L // 2, torch.arange(L * L // 2)
        kept = i[(i // (L // 2)) % 2 == 0]
    else:
        raise ValueError(f"step must be 1 or 2, got {step!r}")
    weights = torch.zeros(n_in, kept.numel(), dtype=dtype)
    weights[kept, torch.arange(kept.numel())] = 1
    return weights


def flow_beta(beta):
    """Approximate decimation recursion (Eq. 5): ``beta' = 3/8 ln cosh(4 beta)`` (tensor or float)."""
    if isinstance(beta, torch.Tensor):
        if (beta < 0).any():
            raise ValueError("beta must be >= 0")
        x = 4.0 * beta
        return 0.375 * (x + torch.nn.functional.softplus(-2.0 * x) - math.log(2.0))  # stable ln cosh
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    x = 4.0 * float(beta)
    return 0.375 * (x + math.log1p(math.exp(-2.0 * x)) - math.log(2.0))


def flow_fixed_point(tol: float = 1e-14) -> float:
    """The non-trivial fixed point ``beta* = 3/8 ln cosh(4 beta*)`` (bisection on [0.1, 2]; ~0.50698)."""
    lo, hi = 0.1, 2.0  # f(beta) = flow_beta(beta) - beta is < 0 at lo and > 0 at hi
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if flow_beta(mid) < mid:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
