"""Fixed points of a measured flow ``beta -> beta'``: where a curve crosses the diagonal ``beta' = beta``.

The paper (Sec. III D, Fig. 16) fits a straight line ``beta' = a beta + b`` to the beta predicted for the
autoencoder's outputs and reports where it crosses ``beta' = beta``: ``beta* = b / (1 - a)``
(:func:`line_crossing`). :func:`bootstrap_crossing` puts an error bar on that number by resampling the lattices
measured at every beta; :func:`curve_crossings` finds the crossings of a tabulated curve without a fit (linear
interpolation between the grid points where ``beta' - beta`` changes sign).
"""

from __future__ import annotations

import numpy as np


def _as_1d(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise ValueError(f"{name} must be a 1-D sequence of at least 2 numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def line_crossing(beta, beta_prime) -> tuple[float, float, float]:
    """Least-squares line ``beta' = a beta + b`` through the points; returns ``(a, b, b / (1 - a))``.

    The crossing is ``nan`` when the line is parallel to the diagonal (``|1 - a| < 1e-12``).
    """
    beta, beta_prime = _as_1d("beta", beta), _as_1d("beta_prime", beta_prime)
    if beta.shape != beta_prime.shape:
        raise ValueError(f"beta and beta_prime must have the same length, got {beta.size} and {beta_prime.size}")
    a, b = np.polyfit(beta, beta_prime, 1)
    parallel = abs(1.0 - a) < 1e-12
    return float(a), float(b), float("nan") if parallel else float(b / (1.0 - a))


def bootstrap_crossing(beta, predictions, n_boot: int = 1000, seed: int = 0) -> dict:
    """Line crossing of the per-beta means of ``predictions`` ``(n_beta, n_lattices)`` and its bootstrap spread.

    Each bootstrap replica resamples, independently at every beta, ``n_lattices`` of the lattices with
    replacement, averages them and refits the line. Returns ``{"crossing", "slope", "intercept", "std",
    "ci68": (lo, hi), "ci95": (lo, hi), "n_boot"}`` (percentile intervals of the replicas). The spread covers the
    finite number of test lattices only, not the training of the networks that produced ``predictions``.
    """
    beta = _as_1d("beta", beta)
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape[0] != beta.size or predictions.shape[1] < 1:
        raise ValueError(f"predictions must have shape (len(beta), n_lattices) = ({beta.size}, n), "
                         f"got {predictions.shape}")
    if not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    slope, intercept, crossing = line_crossing(beta, predictions.mean(1))
    rng = np.random.default_rng(seed)
    n_beta, n_lattices = predictions.shape
    picks = rng.integers(0, n_lattices, size=(n_boot, n_beta, n_lattices))
    means = np.take_along_axis(predictions[None], picks, axis=2).mean(2)  # (n_boot, n_beta)
    # The least-squares line of every replica at once: a = cov(beta, y) / var(beta), b = mean(y) - a mean(beta).
    centred = beta - beta.mean()
    a = (means - means.mean(1, keepdims=True)) @ centred / (centred @ centred)
    b = means.mean(1) - a * beta.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        replicas = b / (1.0 - a)
    replicas = replicas[np.isfinite(replicas)]
    return {"crossing": crossing, "slope": slope, "intercept": intercept, "std": float(replicas.std(ddof=1)),
            "ci68": tuple(float(q) for q in np.percentile(replicas, [16, 84])),
            "ci95": tuple(float(q) for q in np.percentile(replicas, [2.5, 97.5])), "n_boot": n_boot}


def curve_crossings(beta, beta_prime) -> list[float]:
    """All ``beta`` where the tabulated curve crosses ``beta' = beta`` (``beta`` increasing), by linear
    interpolation of ``beta' - beta`` between neighbouring grid points; a grid point on the diagonal counts once."""
    beta, beta_prime = _as_1d("beta", beta), _as_1d("beta_prime", beta_prime)
    if beta.shape != beta_prime.shape:
        raise ValueError(f"beta and beta_prime must have the same length, got {beta.size} and {beta_prime.size}")
    if np.any(np.diff(beta) <= 0):
        raise ValueError("beta must be strictly increasing")
    gap = beta_prime - beta
    crossings = [float(beta[i]) for i in range(beta.size) if gap[i] == 0.0]
    for i in np.flatnonzero(gap[:-1] * gap[1:] < 0):
        crossings.append(float(beta[i] - gap[i] * (beta[i + 1] - beta[i]) / (gap[i + 1] - gap[i])))
    return sorted(crossings)
