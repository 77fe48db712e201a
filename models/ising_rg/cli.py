"""``python -m models.ising_rg``: the command line, ``all`` (every stage in order) and the stamped result tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

from physkernels.atomic import write_json
from physkernels.benchmarks.harness import ResultTable, write_results
from physkernels.physics import rg

from .common import QUICK, SETTING_HELP, Settings, out_path
from .data import stage_data
from .autoencoders import stage_models, stage_shallow
from .regression import stage_widerange
from .entropy import stage_entropy
from .flow import stage_flow

STAGES = {"data": stage_data, "shallow": stage_shallow, "models": stage_models, "widerange": stage_widerange,
          "entropy": stage_entropy, "flow": stage_flow}


def run_all(s: Settings, out: str, progress: bool) -> dict:
    start = time.perf_counter()
    for name in ("data", "shallow", "models", "widerange", "entropy", "flow"):
        STAGES[name](s, out, progress)
    summary = {"settings": dataclasses.asdict(s), "seconds": time.perf_counter() - start}
    for name in ("shallow", "models", "widerange", "entropy", "flow"):
        with open(os.path.join(out, f"{name}.json")) as f:
            summary[name] = json.load(f)
    for key in ("models", "widerange", "shallow"):  # keep the summary short: drop per-epoch histories
        summary[key].pop("histories", None)
    summary["widerange"]["ae_wr"].pop("history", None)
    for key in ("regressor", "regressor_half"):
        summary["widerange"][key].pop("histories", None)
    write_json(out_path(out, "summary.json"), summary)
    return summary


def write_bench_results(out: str, results_dir: str, stem: str, timing: dict) -> tuple[str, str]:
    """Stamped tables (machine, date, commit) of the regressor (Fig. 15) and flow (Fig. 16) results found in
    ``out``, written as ``<results_dir>/<stem>.json|md``."""
    with open(os.path.join(out, "widerange.json")) as f:
        wide = json.load(f)
    with open(os.path.join(out, "flow.json")) as f:
        flow = json.load(f)
    s = wide["settings"]
    regressor = ResultTable("regressor", "Beta regressor (Fig. 15): n-n/2 (tanh)-1 (ReLU), MSE",
                            ["lattice", "seed", "epochs", "train MSE", "val MSE", "test MSE (grid)",
                             "dead ReLU fraction"])
    for key in ("regressor", "regressor_half"):
        r, L = wide[key], s["L"] if key == "regressor" else s["L"] // 2
        for k in range(len(r["val_mse"])):
            regressor.add(**{"lattice": f"{L}x{L}", "seed": k, "epochs": r["epochs"], "train MSE": r["train_mse"][k],
                             "val MSE": r["val_mse"][k], "dead ReLU fraction": r["dead_relu_fraction"][k],
                             "test MSE (grid)": r["test_mse"][k] if key == "regressor" else None})
    regressor.add(**{"lattice": f"{s['L']}x{s['L']}", "seed": "mean of seeds",
                     "test MSE (grid)": wide["regressor"]["ensemble_test_mse"]})
    regressor.add(**{"lattice": "32x32 (paper)", "epochs": "until MSE 0.0035", "train MSE": 0.0035})
    schedule = (f"cosine-decayed to {s['regressor_final_lr']}" if s["regressor_final_lr"] != s["regressor_lr"]
                else "constant")
    regressor.notes += [
        f"wide-range set: {s['n_wide']} lattices on {s['wide_betas']} betas ~ U[0.01, 0.6), 20% validation; "
        f"test grid: {s['grid_betas']} betas in [0.025, 0.5] x {s['grid_lattices']} fresh lattices",
        f"Adam lr {s['regressor_lr']} ({schedule}), batch {s['regressor_batch']}, L1 {s['regressor_l1']}, output layer "
        f"initialised to the constant mean beta; variance of beta in the set {wide['regressor']['beta_variance']:.4f}",
        "the L/2 regressor is trained the same way on an L/2 wide-range set; it measures decimated lattices"]
    crossing = ResultTable("flow", "RG flow (Fig. 16): fixed points beta' = beta", ["quantity", "here", "paper"])
    crossing.add(quantity="AE-WR line crossing", here=f"{flow['ae_crossing']:.4f} +- {flow['ae_crossing_error']:.4f}",
                 paper=str(flow["paper_ae_crossing"]))
    crossing.add(quantity="  bootstrap std over test lattices / std over regressor seeds",
                 here=f"{flow['ae_crossing_bootstrap_std']:.4f} / {flow['ae_crossing_seed_std']:.4f}")
    crossing.add(quantity="  crossing per regressor seed",
                 here=", ".join(f"{c:.4f}" for c in flow["ae_crossing_per_seed"]))
    crossing.add(quantity="  line fit slope / intercept", here=f"{flow['fit_slope']:.3f} / {flow['fit_intercept']:.3f}")
    measured = rg.curve_crossings(flow["beta"], flow["beta_prime_ae"])
    crossing.add(quantity="AE-WR points themselves (no fit): crossings inside the grid",
                 here=", ".join(f"{c:.4f}" for c in measured) or "none: beta' > beta at every grid beta")
    crossing.add(quantity="AE-WR line crossing, readings calibrated by the regressor on the inputs",
                 here=f"{flow['ae_crossing_calibrated']:.4f} +- {flow['ae_crossing_calibrated_seed_std']:.4f}")
    crossing.add(quantity="decimation flow Eq. 5 fixed point", here=f"{flow['decimation_fixed_point']:.4f}",
                 paper=f"{flow['paper_decimation_fixed_point']:.3f}")
    crossing.add(quantity="measured beta' of lattices decimated twice: crossings",
                 here=", ".join(f"{c:.4f}" for c in flow["beta_prime_decimated_crossings"]) or "none in grid")
    for key, name in (("spins", "AE-WR outputs as +-1 spins"), ("raw", "AE-WR outputs raw (no to_spins)")):
        ro = flow["readouts"][key]
        crossing.add(quantity=f"{name}: line crossing (fit over beta {ro['fit_range'][0]:.3f}-"
                              f"{ro['fit_range'][1]:.3f}), mean +- std over {len(ro['per_ae_seed'])} AE-WR seeds",
                     here=f"{ro['crossing']:.4f} +- {ro['crossing_std_over_ae_seeds']:.4f}")
        crossing.add(quantity="  per AE-WR seed (+- bootstrap and regressor seeds)",
                     here=", ".join(f"{r['crossing']:.4f} +- {r['crossing_error']:.4f}" for r in ro["per_ae_seed"]))
        crossing.add(quantity="  fit-free, per AE-WR seed: grid betas with beta' > beta; crossings of the points",
                     here="; ".join(f"{n} of {len(flow['beta'])}, "
                                    + (", ".join(f"{c:.3f}" for c in pc) or "none")
                                    for n, pc in zip(ro["above_diagonal_per_ae_seed"],
                                                     ro["point_crossings_per_ae_seed"])))
    matched = flow["beta_prime_decimated_matched"]
    crossing.add(quantity="decimated twice, beta' by matching the exact L/2 nearest-neighbour correlation",
                 here=", ".join(f"{b:.3f}->{m:.3f}" for b, m in zip(flow["beta"], matched)))
    crossing.add(quantity="  its crossings with beta' = beta",
                 here=", ".join(f"{c:.4f}" for c in flow["beta_prime_decimated_matched_crossings"]) or "none")
    crossing.add(quantity="exact beta_c", here=f"{flow['beta_c']:.4f}", paper="0.4352 (the paper's value)")
    crossing.notes.append(f"AE-WR: {s['epochs']} epochs, hinge loss train {wide['ae_wr']['train_loss']:.3f} / "
                          f"val {wide['ae_wr']['val_loss']:.3f} (paper 0.347 / 0.357, 4000 epochs)")
    cost = ResultTable("cost", "Wall and CPU time of this run", ["stage", "wall s", "CPU s", "threads"])
    cost.add(**{"stage": timing["stage"], "wall s": timing["wall_s"], "CPU s": timing["cpu_s"],
                "threads": timing["threads"]})
    return write_results([regressor, crossing, cost], results_dir, stem)


def flow_summary(path: str) -> str:
    """A few lines on the flow result in ``path`` (flow.json): the crossings of each readout and of decimation."""
    with open(path) as f:
        flow = json.load(f)
    lines = [f"flow over beta {flow['fit_range'][0]:.3f}-{flow['fit_range'][1]:.3f}:"]
    for key, ro in flow["readouts"].items():
        lines.append(f"  AE-WR outputs ({key}): line crossing {ro['crossing']:.4f} +- "
                     f"{ro['crossing_std_over_ae_seeds']:.4f} over {len(ro['per_ae_seed'])} AE-WR seed(s); "
                     f"beta' > beta at {ro['above_diagonal_per_ae_seed']} of {len(flow['beta'])} betas")
    matched = flow["beta_prime_decimated_matched_crossings"]
    lines.append(f"  decimated twice, correlation matching: crossings "
                 f"{', '.join(f'{c:.4f}' for c in matched) or 'none'}; Eq. 5 fixed point "
                 f"{flow['decimation_fixed_point']:.4f}")
    return "\n".join(lines)


def _tunable_fields():
    """The Settings fields that are command-line options (``quick`` follows ``--quick``)."""
    return [f for f in dataclasses.fields(Settings) if f.name != "quick"]


def main(argv: list[str] | None = None) -> None:
    summary_line = sys.modules[__package__].__doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m models.ising_rg", description=summary_line)
    parser.add_argument("stage", nargs="?", default="all", choices=["all", *STAGES, "rbm"],
                        help="pipeline stage to run (earlier stages it needs run first); all: every stage")
    parser.add_argument("--out", default="runs/ising_rg", help="output folder (data, checkpoints, JSON, PNG)")
    parser.add_argument("--quick", action="store_true",
                        help="8x8 lattices, tiny data, 1 epoch (about 10 s on a 2-core CPU)")
    for field in _tunable_fields():
        parser.add_argument(f"--{field.name.replace('_', '-')}", type={"int": int, "float": float}[str(field.type)],
                            default=None, help=f"{SETTING_HELP[field.name]} (default {getattr(Settings(), field.name)};"
                                               f" quick {getattr(QUICK, field.name)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--results-dir", default=None,
                        help="also write stamped regressor/flow tables <stem>.json|md here (e.g. bench/results)")
    parser.add_argument("--stem", default="ising_rg", help="file stem for --results-dir")
    args, rest = parser.parse_known_args(argv)
    if args.stage == "rbm":
        from models import ising_rbm

        ising_rbm.main(rest + (["--quick"] if args.quick else []) + ["--out", os.path.join(args.out, "rbm")])
        return
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    base = QUICK if args.quick else Settings()
    overrides = {f.name: getattr(args, f.name) for f in _tunable_fields() if getattr(args, f.name) is not None}
    settings = dataclasses.replace(base, **overrides)
    print(f"ising_rg {args.stage}, {'QUICK' if args.quick else 'full'} run: " + ", ".join(
        f"{f.name} {getattr(settings, f.name)}" for f in _tunable_fields()), flush=True)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    wall, cpu = time.perf_counter(), time.process_time()
    if args.stage == "all":
        run_all(settings, args.out, progress)
    else:
        STAGES[args.stage](settings, args.out, progress)
    if args.stage in ("all", "flow"):
        print(flow_summary(out_path(args.out, "flow.json")))
    timing = {"stage": args.stage, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
              "threads": torch.get_num_threads()}
    write_json(out_path(args.out, f"timing_{args.stage}.json"), timing)
    if args.results_dir:
        if args.stage not in ("all", "flow"):
            parser.error("--results-dir needs the flow stage (flow or all)")
        write_bench_results(args.out, args.results_dir, args.stem, timing)
    print(f"results in {args.out}")
