"""The ``data`` stage: Monte Carlo lattice sets (critical, wide-range, test grid), cached in ``--out``."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from physkernels.physics import rg
from physkernels.physics.ising import sample

from .common import BETA_DATA, cached, out_path, Settings


def grid_betas(s: Settings) -> np.ndarray:
    return np.linspace(0.025, 0.5, s.grid_betas)


def critical_set(s: Settings, out: str, progress: bool) -> dict:
    """``n_critical`` lattices at ``beta = 0.4352`` and their two successive decimations."""
    def make():
        x = sample(s.L, BETA_DATA, s.n_critical, seed=s.seed, progress=progress)
        d1 = rg.decimate(x)
        return {"x": x, "d1": d1, "d2": rg.decimate(d1), "beta": BETA_DATA}

    return cached(out_path(out, "data", "critical.pt"), make)


def wide_set(s: Settings, out: str, progress: bool, L: int | None = None) -> dict:
    """``n_wide`` ``L x L`` lattices (default ``L = s.L``) with beta uniform in [0.01, 0.6): ``wide_betas``
    temperatures drawn at random, one Monte Carlo run each. The ``L/2`` set trains the regressor that measures
    the beta of decimated lattices."""
    L = s.L if L is None else L
    seed_offset = 1 if L == s.L else 200_000

    def make():
        rng = np.random.default_rng(s.seed)
        betas = np.sort(rng.uniform(0.01, 0.6, s.wide_betas))
        counts = np.full(s.wide_betas, s.n_wide // s.wide_betas)
        counts[: s.n_wide % s.wide_betas] += 1
        xs, bs = [], []
        for i, (beta, n) in enumerate(tqdm(list(zip(betas, counts)), desc=f"wide-range set {L}x{L}",
                                           disable=not progress)):
            xs.append(sample(L, float(beta), int(n), seed=s.seed + seed_offset + i))
            bs.append(torch.full((int(n),), float(beta)))
        return {"x": torch.cat(xs), "beta": torch.cat(bs)}

    return cached(out_path(out, "data", "wide.pt" if L == s.L else f"wide_L{L}.pt"), make)


def grid_set(s: Settings, out: str, progress: bool) -> dict:
    """The test grid: ``grid_lattices`` fresh lattices at each of ``grid_betas`` betas in [0.025, 0.5]."""
    def make():
        betas = grid_betas(s)
        xs = [sample(s.L, float(b), s.grid_lattices, seed=s.seed + 100_000 + i)
              for i, b in enumerate(tqdm(betas, desc="test grid", disable=not progress))]
        return {"x": torch.stack(xs), "beta": torch.tensor(betas)}

    return cached(out_path(out, "data", "grid.pt"), make)


def stage_data(s: Settings, out: str, progress: bool) -> dict:
    return {"critical": critical_set(s, out, progress), "wide": wide_set(s, out, progress),
            "wide_half": wide_set(s, out, progress, s.L // 2), "grid": grid_set(s, out, progress)}
