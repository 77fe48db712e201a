"""The Ising data sets of the RG-vs-autoencoder study (Shukla & Thakur, Sec. II), with a CLI.

* ``critical``: ``n`` decorrelated ``L x L`` samples at one beta (paper: 30000 at beta = 0.4352, L = 32) drawn
  by :func:`sample` (Wolff by default), plus their two successive decimations
  (:func:`physkernels.physics.rg.decimate`: ``(n, L, L/2)`` then ``(n, L/2, L/2)``).
* ``wide``: ``n`` samples with beta uniform in ``[beta_min, beta_max)`` (paper: 50000 in [0.01, 0.6)): every
  sample is the final state of its own Swendsen-Wang chain at its own beta, started at random and thermalised for
  ``max(thermalization, 20 tau_max)`` sweeps, where ``tau_max`` is the largest integrated autocorrelation time
  (energy, |m|) measured on a pilot grid of betas over the range. Samples are independent by construction.

Files are written atomically (``torch.save`` to a temporary file, then ``os.replace``) as a dict of tensors plus
``meta`` (seed, algorithm, tau, spacing, ...), with a JSON copy of ``meta`` next to it. Same arguments and seed
give identical tensors (for any thread count).

CLI::

    python -m physkernels.physics.ising.datasets critical --n 30000 --L 32 --beta 0.4352 --seed 0 --out data/ising
    python -m physkernels.physics.ising.datasets wide --n 50000 --L 32 --beta-min 0.01 --beta-max 0.6 --seed 0
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from ...atomic import save_atomic, write_json
from . import engines
from .observables import integrated_autocorrelation_time
from .sampler import PILOT_TAUS, THERMALIZATION_TAUS, sample


def _decimate():
    from ..rg import decimate  # the RG package owns decimation

    return decimate


def critical_dataset(n: int = 30000, L: int = 32, beta: float = 0.4352, seed: int = 0, algorithm: str = "wolff",
                     progress: bool = True) -> dict:
    """``{"configs", "decimated_1", "decimated_2", "meta"}`` (int8 tensors); see the module docstring."""
    configs, info = sample(L, beta, n, algorithm, seed=seed, return_info=True, progress=progress)
    decimate = _decimate()
    once = decimate(configs)
    twice = decimate(once)
    meta = {"kind": "critical", **info.to_dict(), "shapes": [list(t.shape) for t in (configs, once, twice)]}
    return {"configs": configs, "decimated_1": once, "decimated_2": twice, "meta": meta}


def _sub_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _pilot_tau(L: int, betas: np.ndarray, seed: int, chains_per_beta: int = 32, thermalization: int = 100):
    """Largest tau (energy, |m|, in SW sweeps) over a grid of betas, with the pilot length adapted to >= 40 tau."""
    grid = np.repeat(betas, chains_per_beta)
    engine = engines.CppSwendsenWangEngine(L, torch.from_numpy(grid), len(grid), _sub_seed(seed, 2**32))
    engine.run(thermalization)
    pilot, taus = 200, {}
    for _ in range(4):
        energy, absm = engine.run(pilot, record=True)
        taus = {float(b): max(integrated_autocorrelation_time(energy[i * chains_per_beta:(i + 1) * chains_per_beta]),
                              integrated_autocorrelation_time(absm[i * chains_per_beta:(i + 1) * chains_per_beta]))
                for i, b in enumerate(betas)}
        if pilot >= PILOT_TAUS * max(taus.values()):
            break
        pilot = math.ceil(PILOT_TAUS * max(taus.values()))
    return max(taus.values()), taus


def wide_range_dataset(n: int = 50000, L: int = 32, beta_min: float = 0.01, beta_max: float = 0.6, seed: int = 0,
                       thermalization: int = 100, chunk: int = 5000, progress: bool = True) -> dict:
    """``{"configs" (n, L, L) int8, "betas" (n,) float64, "meta"}``; see the module docstring."""
    if not 0 <= beta_min < beta_max:
        raise ValueError(f"need 0 <= beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
    if not engines.CppSwendsenWangEngine.available():
        raise RuntimeError("the wide-range data set needs the compiled kernels (physkernels._C)")
    start = time.perf_counter()
    betas = np.random.Generator(np.random.Philox(seed)).uniform(beta_min, beta_max, n)
    tau_max, taus = _pilot_tau(L, np.linspace(beta_min, beta_max, 13)[:-1] + (beta_max - beta_min) / 24, seed)
    sweeps = max(thermalization, math.ceil(THERMALIZATION_TAUS * tau_max))
    configs = torch.empty((n, L, L), dtype=torch.int8)
    starts = range(0, n, chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"ising wide-range L={L}", unit="chunk")
    for i, lo in enumerate(starts):
        hi = min(n, lo + chunk)
        engine = engines.CppSwendsenWangEngine(L, torch.from_numpy(betas[lo:hi]), hi - lo, _sub_seed(seed, i))
        engine.run(sweeps)
        configs[lo:hi] = engine.configs()
    meta = {"kind": "wide", "L": L, "n_samples": n, "beta_min": beta_min, "beta_max": beta_max, "seed": seed,
            "algorithm": "swendsen_wang", "chunk": chunk, "thermalization_sweeps": sweeps, "tau_max": tau_max,
            "tau_by_beta": taus, "samples_per_chain": 1, "wall_time_s": time.perf_counter() - start}
    return {"configs": configs, "betas": torch.from_numpy(betas), "meta": meta}


def save_dataset(data: dict, path: str) -> str:
    """Write ``data`` atomically to ``path`` (torch.save) and its ``meta`` to ``path`` with suffix ``.json``."""
    save_atomic(data, path)
    write_json(os.path.splitext(path)[0] + ".json", data["meta"])
    return path


def load_dataset(path: str) -> dict:
    """Read a file written by :func:`save_dataset`."""
    return torch.load(path, weights_only=True)


def default_path(out: str, kind: str, L: int, seed: int, n: int, beta: float | None = None) -> str:
    tag = f"b{beta:g}_" if beta is not None else ""
    return os.path.join(out, f"ising_{kind}_L{L}_{tag}n{n}_seed{seed}.pt")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m physkernels.physics.ising.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    crit = sub.add_parser("critical", help="n samples at one beta plus two successive decimations")
    crit.add_argument("--beta", type=float, default=0.4352)
    crit.add_argument("--algorithm", default="wolff", choices=["wolff", "swendsen_wang", "metropolis"])
    wide = sub.add_parser("wide", help="n samples with beta uniform in [beta_min, beta_max)")
    wide.add_argument("--beta-min", type=float, default=0.01)
    wide.add_argument("--beta-max", type=float, default=0.6)
    wide.add_argument("--thermalization", type=int, default=100)
    for p, n in ((crit, 30000), (wide, 50000)):
        p.add_argument("--n", type=int, default=n)
        p.add_argument("--L", type=int, default=32)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default="data/ising", help="output folder")
        p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.kind == "critical":
        data = critical_dataset(args.n, args.L, args.beta, args.seed, args.algorithm)
        path = default_path(args.out, "critical", args.L, args.seed, args.n, args.beta)
    else:
        data = wide_range_dataset(args.n, args.L, args.beta_min, args.beta_max, args.seed, args.thermalization)
        path = default_path(args.out, "wide", args.L, args.seed, args.n)
    save_dataset(data, path)
    meta = data["meta"]
    summary = {k: meta[k] for k in ("kind", "n_samples", "wall_time_s") if k in meta}
    print(f"wrote {path}: {summary}")
    return path


if __name__ == "__main__":
    main()
