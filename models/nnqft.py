"""NN-QFT experiments of Erbin, Lahoche and Samary (2022): Fig. 1 (m_2, m_4 against width) and Fig. 2 (the
sigma_w flow of u4, for d_in = 1 and the new d_in = 2, 3).

    python -m models.nnqft fig1 [--quick] [--out runs/nnqft_fig1]
    python -m models.nnqft fig2 [--quick] [--d-in 1 2 3] [--out runs/nnqft_fig2]
    python -m models.nnqft replot RUN_DIR      # redraw the PNGs from RUN_DIR/results.json

Each run writes ``results.json`` and talk-ready PNGs under ``--out``. Uses only the public physkernels API.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

import torch
from tqdm import tqdm

from physkernels.atomic import write_json
from physkernels.physics import nnqft

from . import nnqft_plots

FIG1_POINTS = [-0.01, -0.006, -0.002, 0.002, 0.006, 0.01]
FIG1_WIDTHS = [2, 3, 4, 5, 10, 20, 50, 100, 500, 1000]
FIG2_WIDTHS = [2, 10, 100, 1000]
FIG2_SIGMAS = [1.0 + 0.5 * i for i in range(19)] + [20.0]


def _stats(values: torch.Tensor) -> dict:
    v = values[torch.isfinite(values)]
    return {"mean": v.mean().item(), "median": v.median().item(), "std": v.std().item() if v.numel() > 1 else 0.0}


def run_fig1(args: argparse.Namespace) -> dict:
    """m_n = Delta G^(n) / G0^(n) for n = 2, 4 over all combos of the six points, per width (Eq. 3.3-3.4)."""
    rows = []
    start = time.perf_counter()
    for i, width in enumerate(tqdm(args.widths, desc="fig1 widths", unit="width")):
        t0 = time.perf_counter()
        g = nnqft.green_functions(args.points, args.max_n, width, args.n_bags, args.n_nets, args.sigma_w,
                                  args.sigma_b, seed=args.seed + i, backend=args.backend)
        seconds = time.perf_counter() - t0
        row = {"width": width, "seconds": seconds, "backend": g.backend}
        for n in range(1, args.max_n + 1):
            idx = g.order(n)
            if n % 2:
                row[f"zscore_{n}"] = g.zscore[idx].tolist()
                continue
            row[f"m_{n}"] = g.m[idx].tolist()
            row[f"m_{n}_per_bag_mean"] = g.m_per_bag[:, idx].mean(1).tolist()
            row[f"m_{n}_per_bag"] = g.m_per_bag[:, idx].flatten().tolist()
            row[f"background_{n}"] = g.background[idx].tolist()
            row[f"m_{n}_stats"] = _stats(g.m[idx])
        idx4 = g.order(4)
        exact = nnqft.exact_four_point_deviation(args.points, [g.table.combos[r] for r in idx4.tolist()], width,
                                                 args.sigma_w, args.sigma_b)
        row["m_4_exact"] = (exact / g.gaussian[idx4]).tolist()
        rows.append(row)
    total = time.perf_counter() - start
    return {"figure": 1, "config": _config(args), "total_seconds": total, "widths": rows}


def _fig2_points(d_in: int, points: list[float]) -> torch.Tensor:
    """The 1-d points placed on the diagonal, x_k = p_k (1, ..., 1), so sigma_w^2 |x - y|^2 / d_in is the same
    for every d_in and only the measure of the leg integral changes with d_in."""
    return torch.tensor(points, dtype=torch.float64)[:, None].repeat(1, d_in)


def run_fig2(args: argparse.Namespace) -> dict:
    """u4 (and u6) against sigma_w at sigma_b = 0 for each width and d_in, with power-law fits (Eq. 3.6, 4.6)."""
    tasks = [(d, w, s) for d in args.d_in for w in args.widths for s in args.sigmas]
    series: dict[tuple[int, int], list] = {}
    start = time.perf_counter()
    for task_index, (d_in, width, sigma) in enumerate(tqdm(tasks, desc="fig2 (d_in, N, sigma_w)", unit="run")):
        pts = _fig2_points(d_in, args.points)
        g = nnqft.green_functions(pts, args.max_n, width, args.n_bags, args.n_nets, sigma, args.sigma_b,
                                  seed=args.seed + task_index, backend=args.backend)
        u4_bag = nnqft.u4(g).mean(1)  # average over the 4-point combos, one value per bag
        entry = {"sigma_w": sigma, "u4": u4_bag.mean().item(),
                 "u4_err": u4_bag.std().item() / math.sqrt(args.n_bags),
                 "u4_exact": nnqft.exact_u4(g).mean().item()}
        if args.max_n >= 6:
            u6_bag = nnqft.u6(g).mean(1)
            entry.update(u6=u6_bag.mean().item(), u6_err=u6_bag.std().item() / math.sqrt(args.n_bags))
        series.setdefault((d_in, width), []).append(entry)
    total = time.perf_counter() - start
    fits = []
    for (d_in, width), entries in series.items():
        sig = [e["sigma_w"] for e in entries]
        fit = {"d_in": d_in, "width": width, "predicted_slope_u4": nnqft.predicted_slope(4, d_in),
               "predicted_slope_u6": nnqft.predicted_slope(6, d_in), "points": entries}
        for key in ("u4", "u6"):
            if key in entries[0]:
                try:
                    f = nnqft.fit_power_law(sig, [e[key] for e in entries], [e[key + "_err"] for e in entries])
                    significant = sum(abs(e[key]) > 2 * e[key + "_err"] for e in entries)
                    fit[f"fit_{key}"] = {"slope": f.slope, "slope_err": f.slope_err, "intercept": f.intercept,
                                         "chi2_per_dof": f.chi2_per_dof,
                                         "n_significant": significant, "n_sign_negative": sum(e[key] < 0 for e in entries)}
                except ValueError as exc:
                    fit[f"fit_{key}"] = {"error": str(exc)}
        exact = nnqft.fit_power_law(sig, [e["u4_exact"] for e in entries], [abs(e["u4_exact"]) * 1e-3 for e in entries])
        fit["fit_u4_exact"] = {"slope": exact.slope, "intercept": exact.intercept}
        fits.append(fit)
    return {"figure": 2, "config": _config(args), "total_seconds": total, "series": fits}


def _config(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("func",)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.nnqft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="figure", required=True)
    for name, widths, sigma_b, n_bags, max_n in (("fig1", FIG1_WIDTHS, 1.0, 20, 4), ("fig2", FIG2_WIDTHS, 0.0, 30, 6)):
        p = sub.add_parser(name, help=f"reproduce Fig. {name[-1]}")
        p.add_argument("--widths", type=int, nargs="+", default=widths, help="hidden widths N")
        p.add_argument("--n-bags", type=int, default=n_bags, help="independent bags (ensembles) per width")
        p.add_argument("--n-nets", type=int, default=30000, help="networks per bag")
        p.add_argument("--sigma-b", type=float, default=sigma_b, help="bias standard deviation sigma_b")
        p.add_argument("--points", type=float, nargs="+", default=FIG1_POINTS, help="input points x of G(x1..xn)")
        p.add_argument("--max-n", type=int, default=max_n, help="highest Green-function order")
        p.add_argument("--seed", type=int, default=2022, help="seed of the counter-based weight stream")
        p.add_argument("--backend", default=None, help="physkernels backend (default: fastest available)")
        p.add_argument("--quick", action="store_true", help="tiny configuration (seconds)")
        p.add_argument("--out", default=f"runs/nnqft_{name}", help="output folder (results.json and PNGs)")
        if name == "fig1":
            p.add_argument("--sigma-w", type=float, default=1.0, help="weight standard deviation sigma_W")
        else:
            p.add_argument("--sigmas", type=float, nargs="+", default=FIG2_SIGMAS, help="sigma_W values of the flow")
            p.add_argument("--d-in", type=int, nargs="+", default=[1, 2, 3], help="input dimensions (all run)")
    return parser


def _apply_quick(args: argparse.Namespace) -> None:
    args.n_nets, args.n_bags = 400, 4
    if args.figure == "fig1":
        args.widths = [2, 10, 100]
    else:
        args.widths, args.sigmas = [2, 100], [1.0, 2.0, 4.0]  # every requested d_in is kept


def _describe(args: argparse.Namespace) -> str:
    """One line saying what this run computes (quick or full, and its sizes)."""
    kind = "QUICK (tiny ensembles, not the paper's configuration)" if args.quick else "full"
    sizes = f"widths {args.widths}, {args.n_bags} bags x {args.n_nets} networks, n <= {args.max_n}"
    if args.figure == "fig2":
        sizes += f", sigma_W {args.sigmas}, d_in {args.d_in}"
    return f"{args.figure}, {kind} run: {sizes}"


def replot(out_dir: str) -> list[str]:
    """Redraw the PNGs of a finished run from its results.json."""
    with open(os.path.join(out_dir, "results.json")) as f:
        result = json.load(f)
    return nnqft_plots.plot_fig1(result, out_dir) if result["figure"] == 1 else nnqft_plots.plot_fig2(result, out_dir)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["replot"]:
        if len(argv) != 2:
            print("usage: python -m models.nnqft replot RUN_DIR", file=sys.stderr)
            return 2
        print("wrote " + ", ".join(replot(argv[1])))
        return 0
    args = _parser().parse_args(argv)
    if args.quick:
        _apply_quick(args)
    print(_describe(args), flush=True)
    os.makedirs(args.out, exist_ok=True)
    result = run_fig1(args) if args.figure == "fig1" else run_fig2(args)
    result["quick"] = bool(args.quick)
    result["threads"] = torch.get_num_threads()
    result["cpu_seconds"] = resource.getrusage(resource.RUSAGE_SELF).ru_utime  # compute used, whatever the load
    result["load_average"] = os.getloadavg()
    write_json(os.path.join(args.out, "results.json"), result)
    pngs = nnqft_plots.plot_fig1(result, args.out) if args.figure == "fig1" else nnqft_plots.plot_fig2(result, args.out)
    print(f"{args.figure}: {result['total_seconds']:.1f} s; wrote {os.path.join(args.out, 'results.json')}, "
          + ", ".join(pngs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
