"""Monte Carlo validation of the 2D Ising samplers against the exact finite-size results, with plots.

For each algorithm and lattice size, over a grid of beta: the mean energy per spin (error bar from the measured
autocorrelation time) against Kaufman's exact value, the specific heat from the energy variance against the exact
one, ``<|m|>`` next to Yang's infinite-lattice magnetisation, and the measured ``tau_E``, ``tau_|m|``.

    python -m models.ising_mc --quick            # seconds
    python -m models.ising_mc --L 8 32 --samples 4096 --out runs/ising_mc

Writes ``results.json``, ``energy.png`` (residuals in sigma), ``specific_heat.png``, ``tau.png``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from physkernels.atomic import write_json
from physkernels.physics import ising


def run(L_values, betas, n_samples, algorithms, seed, progress=True) -> list[dict]:
    rows = []
    jobs = [(a, L, b) for a in algorithms for L in L_values for b in betas]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="ising MC vs exact", unit="run")
    for algorithm, L, beta in jobs:
        n_chains = min(n_samples, 256)
        x, info = ising.sample(L, float(beta), n_samples, algorithm, seed=seed, n_chains=n_chains, return_info=True)
        energy = ising.energy_per_spin(x).numpy()
        series = energy[: (len(energy) // n_chains) * n_chains].reshape(-1, n_chains).T
        mean, err = ising.mean_and_error(series)
        exact = ising.exact(L, float(beta))
        rows.append({"algorithm": algorithm, "L": L, "beta": float(beta), "energy": mean, "energy_err": err,
                     "energy_exact": exact["energy"], "pull": (mean - exact["energy"]) / err,
                     "specific_heat": float(beta**2 * L * L * energy.var(ddof=1)),
                     "specific_heat_exact": exact["specific_heat"],
                     "abs_m": float(ising.magnetization_per_spin(x).abs().mean()),
                     "m_infinite": ising.spontaneous_magnetization(float(beta)),
                     "tau_energy": info.tau_energy, "tau_abs_m": info.tau_abs_magnetization,
                     "spacing": info.spacing, "wall_s": info.wall_time_s})
    return rows


def plot(rows, out, quick: bool = False) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import save_figure

    paths = []
    keys = sorted({(r["algorithm"], r["L"]) for r in rows})
    for name, ylabel, fn in (
            ("energy", "(E_MC - E_exact) / sigma", lambda r: r["pull"]),
            ("specific_heat", "C per spin (MC points, exact lines)", lambda r: r["specific_heat"]),
            ("tau", "tau (steps; Wolff steps ~ L^2 flipped spins)", lambda r: max(r["tau_energy"], r["tau_abs_m"]))):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for algorithm, L in keys:
            sel = [r for r in rows if r["algorithm"] == algorithm and r["L"] == L]
            ax.plot([r["beta"] for r in sel], [fn(r) for r in sel], "o-", label=f"{algorithm} L={L}", ms=4)
        if name == "energy":
            for y in (-3, 3):
                ax.axhline(y, color="gray", ls="--", lw=0.8)
        if name == "specific_heat":
            for L in sorted({r["L"] for r in rows}):
                grid = np.linspace(min(r["beta"] for r in rows), max(r["beta"] for r in rows), 200)
                ax.plot(grid, [ising.exact(L, float(b))["specific_heat"] for b in grid], "k-", lw=0.8)
        if name == "tau":
            ax.set_yscale("log")
        ax.axvline(ising.BETA_C, color="red", lw=0.8, ls=":")
        ax.set_xlabel("beta")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, os.path.join(out, f"{name}.png"), quick))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m models.ising_mc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--L", type=int, nargs="+", default=[8, 32], help="lattice sides")
    parser.add_argument("--betas", type=float, nargs="+",
                        default=[0.2, 0.3, 0.38, 0.42, 0.4352, ising.BETA_C, 0.46, 0.5, 0.6],
                        help="inverse temperatures")
    parser.add_argument("--samples", type=int, default=4096, help="samples per (L, beta, algorithm)")
    parser.add_argument("--algorithms", nargs="+", default=list(ising.ALGORITHMS), choices=ising.ALGORITHMS,
                        help="Monte Carlo algorithms to compare with the exact solution")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="runs/ising_mc", help="output folder (results.json and plots)")
    parser.add_argument("--quick", action="store_true", help="L=8, 4 betas, 512 samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.L, args.betas, args.samples = [8], [0.3, 0.4352, ising.BETA_C, 0.6], 512
    print(f"ising_mc, {'QUICK' if args.quick else 'full'} run: L {args.L}, betas {args.betas}, {args.samples} "
          f"samples each, algorithms {args.algorithms}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    rows = run(args.L, args.betas, args.samples, args.algorithms, args.seed)
    path = os.path.join(args.out, "results.json")
    write_json(path, {"config": vars(args), "rows": rows}, indent=2)
    pngs = plot(rows, args.out, args.quick)
    worst = max(abs(r["pull"]) for r in rows)
    print(f"{len(rows)} runs, largest |E_MC - E_exact| / sigma = {worst:.2f}; wrote {path}, {', '.join(pngs)}")
    return rows


if __name__ == "__main__":
    main()
