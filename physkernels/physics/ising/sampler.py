"""``sample()``: decorrelated equilibrium configurations of the 2D Ising model.

Procedure (every number below is reported in :class:`SampleInfo`):

1. ``n_chains`` independent chains start from random (infinite-temperature) configurations.
2. Thermalisation: ``thermalization`` steps, then a recorded pilot run of the energy and ``|m|`` of every chain.
   The integrated autocorrelation times ``tau_E`` and ``tau_|m|`` are measured on the pilot (all chains
   together, Sokal windowing). While the steps discarded so far are fewer than ``20 tau`` or the pilot is shorter
   than ``40 tau`` (``tau = max(tau_E, tau_|m|)``), both are extended and ``tau`` is measured again on a fresh
   pilot.
3. Production: every chain is advanced ``spacing = max(1, ceil(2 tau))`` steps between snapshots; snapshots of
   all chains are taken round after round until ``n_samples`` are collected.

A *step* is one sweep for Metropolis (both checkerboard colours) and Swendsen-Wang, and for Wolff a fixed
number of cluster flips, ``flips_per_step = ceil(L^2 / <cluster size>)`` measured after the first
thermalisation (so a Wolff step also touches about ``L^2`` spins and tau is comparable across algorithms).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
import torch

from .observables import integrated_autocorrelation_time

ALGORITHMS = ("wolff", "metropolis", "swendsen_wang")
THERMALIZATION_TAUS = 20
PILOT_TAUS = 40
MAX_ADAPTATIONS = 6
MAX_PILOT_RECORDS = 2**24  # pilot length x chains: bounds the memory of the recorded series


@dataclasses.dataclass(frozen=True)
class SampleInfo:
    """How a set of samples was produced (all step counts are per chain, in units of ``step_unit``)."""

    L: int
    beta: float
    algorithm: str
    backend: str
    seed: int
    n_samples: int
    n_chains: int
    step_unit: str
    flips_per_step: int | None
    mean_cluster_size: float | None
    thermalization_steps: int
    pilot_steps: int
    tau_energy: float
    tau_abs_magnetization: float
    tau_reliable: bool
    spacing: int
    production_steps: int
    wall_time_s: float

    @property
    def tau(self) -> float:
        return max(self.tau_energy, self.tau_abs_magnetization)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _engine_table() -> dict[tuple[str, str], Callable]:
    from . import engines

    return engines.ENGINES


def available_backends(algorithm: str) -> list[str]:
    """Backends that can run ``algorithm`` here, fastest first."""
    return [b for (a, b) in _engine_table() if a == algorithm and _engine_table()[(a, b)].available()]


def _validate(L, beta, n_samples, algorithm, seed, n_chains, backend):
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"L must be an integer >= 2, got {L!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)) or not math.isfinite(beta):
        raise TypeError(f"beta must be a finite real number, got {beta!r}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0 (ferromagnet, J = 1), got {beta}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "metropolis" and (L % 2 or L < 4):
        # L = 2: every move has dE = 0 in the striped states, which then cycle deterministically (not ergodic)
        raise ValueError(f"checkerboard Metropolis needs an even L >= 4, got L={L}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if n_chains is not None and (not isinstance(n_chains, (int, np.integer)) or n_chains < 1):
        raise ValueError(f"n_chains must be a positive integer or None, got {n_chains!r}")
    table = _engine_table()
    if backend not in (None, "auto") and (algorithm, backend) not in table:
        names = sorted({b for (a, b) in table if a == algorithm})
        raise ValueError(f"backend for {algorithm!r} must be 'auto' or one of {names}, got {backend!r}")


def _default_chains(algorithm: str, n_samples: int) -> int:
    return min(n_samples, 1024 if algorithm == "metropolis" else 256)


def _thermalize_wolff(engine, L: int, steps: int, chunk: int = 10) -> tuple[int, int]:
    """Thermalise a Wolff engine, re-tuning ``flips_per_step = ceil(L^2 / <cluster>)`` after every chunk.

    The value may at most double per chunk (clusters of a random start are tiny and grow as the chains order, so
    an unbounded update would overshoot), and thermalisation goes on past ``steps`` until it has settled. The
    last value is kept for the rest of the run (a fixed number of flips per step keeps the chain a fixed
    composition of detailed-balance moves). Returns (flips_per_step, steps run).
    """
    flips_per_step, done = 1, 0
    engine.set_flips_per_step(1)
    while True:
        sites0, flips0 = engine.cluster_counts()
        engine.run(chunk)
        done += chunk
        sites, flips = engine.cluster_counts()
        wanted = max(1, math.ceil(L * L * (flips - flips0) / max(1, sites - sites0)))
        capped = wanted > 2 * flips_per_step
        flips_per_step = min(wanted, 2 * flips_per_step)
        engine.set_flips_per_step(flips_per_step)
        if done >= steps and not capped:
            return flips_per_step, done


def sample(L: int, beta: float, n_samples: int, algorithm: str = "wolff", seed: int = 0, *,
           n_chains: int | None = None, thermalization: int = 100, spacing: int | None = None,
           backend: str | None = None, return_info: bool = False, progress: bool = False):
    """Draw ``n_samples`` equilibrium configurations of the ``L x L`` periodic Ising model (``J = 1``).

    Args:
        L: linear size (>= 2; even and >= 4 for Metropolis).
        beta: inverse temperature (>= 0).
        n_samples: number of configurations returned.
        algorithm: ``"wolff"`` (default; best near criticality), ``"swendsen_wang"`` or ``"metropolis"``
            (checkerboard, multispin-coded in the C++ backend).
        seed: the result is a deterministic function of (all arguments, seed), independent of thread count.
        n_chains: independent chains run side by side (default: up to 256, Metropolis up to 1024).
        thermalization: initial thermalisation steps (extended to at least ``20 tau``).
        spacing: steps between snapshots of a chain; default ``max(1, ceil(2 tau))``. A smaller value than
            ``2 tau`` is honoured but the samples are then correlated (``info.spacing`` tells).
        backend: None (the process-wide choice: ``physkernels.set_backend`` / ``use_backend``, default
            ``auto``), ``"auto"`` (C++ when built, else numpy), ``"cpp"``, ``"reference"`` (numpy), and for
            Metropolis ``"cuda"`` / ``"triton"`` (GPU; same chains bit for bit as ``"cpp"``).
        return_info: also return a :class:`SampleInfo`.
        progress: show a tqdm progress bar over production rounds.

    Returns:
        int8 tensor of shape ``(n_samples, L, L)`` with entries +-1; with ``return_info``, ``(tensor, info)``.
        Samples are ordered round by round (sample ``i`` comes from chain ``i % n_chains``).
    """
    _validate(L, beta, n_samples, algorithm, seed, n_chains, backend)
    if isinstance(thermalization, bool) or not isinstance(thermalization, (int, np.integer)) or thermalization < 0:
        raise ValueError(f"thermalization must be a non-negative integer, got {thermalization!r}")
    if spacing is not None and (not isinstance(spacing, (int, np.integer)) or spacing < 1):
        raise ValueError(f"spacing must be a positive integer or None, got {spacing!r}")
    start = time.perf_counter()
    L, beta, n_samples, seed = int(L), float(beta), int(n_samples), int(seed)
    n_chains = int(n_chains) if n_chains is not None else _default_chains(algorithm, n_samples)
    from . import engines

    backend = engines.resolve(algorithm, backend)
    engine = _engine_table()[(algorithm, backend)](L, beta, n_chains, seed)

    flips_per_step = None
    if algorithm == "wolff":
        flips_per_step, discarded = _thermalize_wolff(engine, L, thermalization)
        cluster_counts_start = engine.cluster_counts()
    else:
        engine.run(thermalization)
        discarded = thermalization
    pilot = max(100, thermalization)
    reliable = False
    for _ in range(MAX_ADAPTATIONS):
        energy, absm = engine.run(pilot, record=True)
        discarded += pilot
        tau_e = integrated_autocorrelation_time(energy)
        tau_m = integrated_autocorrelation_time(absm)
        tau = max(tau_e, tau_m)
        if pilot >= PILOT_TAUS * tau and discarded - pilot >= THERMALIZATION_TAUS * tau:
            reliable = True
            break
        max_pilot = max(100, MAX_PILOT_RECORDS // n_chains)
        if pilot >= max_pilot:
            break
        extra = max(0, math.ceil(THERMALIZATION_TAUS * tau) - discarded)
        engine.run(extra)
        discarded += extra
        pilot = min(max_pilot, max(pilot, math.ceil(PILOT_TAUS * tau)))
    mean_cluster = None
    if algorithm == "wolff":
        sites, flips = engine.cluster_counts()
        mean_cluster = (sites - cluster_counts_start[0]) / max(1, flips - cluster_counts_start[1])
    spacing = int(spacing) if spacing is not None else max(1, math.ceil(2.0 * tau))

    rounds = -(-n_samples // n_chains)
    out = torch.empty((rounds * n_chains, L, L), dtype=torch.int8)
    iterator = range(rounds)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"ising {algorithm} L={L} beta={beta:.4g}", unit="round")
    for r in iterator:
        engine.run(spacing)
        out[r * n_chains:(r + 1) * n_chains] = engine.configs()
    samples = out[:n_samples].clone() if rounds * n_chains != n_samples else out
    if not return_info:
        return samples
    info = SampleInfo(L=L, beta=beta, algorithm=algorithm, backend=backend, seed=seed, n_samples=n_samples,
                      n_chains=n_chains, step_unit="sweep" if algorithm != "wolff" else "wolff step",
                      flips_per_step=flips_per_step, mean_cluster_size=mean_cluster,
                      thermalization_steps=discarded - pilot, pilot_steps=pilot, tau_energy=tau_e,
                      tau_abs_magnetization=tau_m, tau_reliable=reliable, spacing=spacing,
                      production_steps=rounds * spacing, wall_time_s=time.perf_counter() - start)
    return samples, info
