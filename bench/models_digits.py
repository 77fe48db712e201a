"""The offline model targets on sklearn's digits, written to bench/results/models_digits.{json,md}.

    python bench/models_digits.py [--jobs 2] [--sweep] [--only taylornet_mnist ...]

Experiments (each a ``python -m models.train`` subprocess with one torch thread, ``--jobs`` at a time):
* fc2: FC2 vs its MPO-Net at D = 8, m = 5 runs each (target: within 1 point; the whole comparison < 10 min).
* taylornet_7x7: the 7x7 TaylorNet and its CG->conv ablation, m = 5 (target >= 97%; the ablation drops).
* taylornet_mnist: the Fig. 5 TaylorNet on digits resized to 28x28 and its ablation, m = 5 (target >= 97%; one
  run of the preset's 20 epochs costs ~1.5-3 min here, depending on the load).
* --sweep adds fc2-mpo at D = 2, 4, 16 (m = 5) for the accuracy-vs-D plot of the MPO paper's Fig. 2.
Wall times are of each subprocess and are noisy on a shared machine. A finished experiment (its out/wall.json)
is reused when the script is run again; delete --out to start over. ``--only`` runs the named experiments and keeps
the other tables of the existing bench/results/models_digits.json as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from physkernels.benchmarks.harness import ResultTable, write_results  # noqa: E402


def experiments(args) -> dict[str, list[str]]:
    exps = {
        "fc2": ["--model", "fc2", "fc2-mpo", "--bond-dim", "8", "--runs", "5"],
        "taylornet_7x7": ["--model", "taylornet-7x7", "taylornet-7x7-conv", "--runs", "5"],
        "taylornet_mnist": ["--model", "taylornet-mnist", "taylornet-mnist-conv", "--runs", "5"],
    }
    if args.sweep or "fc2_sweep" in (args.only or ()):
        exps["fc2_sweep"] = ["--model", "fc2", "fc2-mpo", "--bond-dim", "2", "4", "8", "16", "--runs", "5"]
    if args.only:
        unknown = sorted(set(args.only) - set(exps))
        if unknown:
            raise SystemExit(f"--only: unknown experiment(s) {unknown}; available: {sorted(exps)}")
        exps = {name: cli for name, cli in exps.items() if name in args.only}
    return exps


def previous_tables(path: str) -> dict[str, ResultTable]:
    """The tables of an earlier run of this script (``<stem>.json``) by name; {} when there is none."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {t["name"]: ResultTable(t["name"], t["title"], t["columns"], t["rows"], t["notes"])
                for t in json.load(f)["tables"]}


def run(name: str, cli: list[str], out_root: str) -> tuple[str, float, dict]:
    """Run one experiment (or reuse it when ``out/wall_<name>.json`` says it finished) -> (name, wall s, results).

    fc2_sweep shares fc2's folder, so its dense and D = 8 runs are fc2's finished checkpoints."""
    out = os.path.join(out_root, "fc2" if name == "fc2_sweep" else name)
    wall_file = os.path.join(out, f"wall_{name}.json")
    own_results = os.path.join(out, f"results_{name}.json")  # results.json is shared by fc2 and fc2_sweep
    if os.path.exists(wall_file) and os.path.exists(own_results):
        with open(wall_file) as f, open(own_results) as g:
            return name, json.load(f)["wall_seconds"], json.load(g)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "models.train", *cli, "--dataset", "digits", "--threads", "1",
                           "--no-progress", "--out", out], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    shutil.copyfile(os.path.join(out, "results.json"), own_results)
    with open(wall_file + ".tmp", "w") as f:
        json.dump({"wall_seconds": wall}, f)
    os.replace(wall_file + ".tmp", wall_file)
    with open(own_results) as f:
        return name, wall, json.load(f)


def table(name: str, title: str, wall: float, results: dict, notes: list[str]) -> ResultTable:
    t = ResultTable(name, title, ["model", "D", "runs", "epochs", "accuracy %", "sigma", "parameters", "rho",
                                  "train s (sum of runs)"])
    for s in results["summaries"]:
        t.add(**{"model": s["model"], "D": s["bond_dim"], "runs": s["runs"], "epochs": s["epochs"],
                 "accuracy %": round(s["mean"], 2), "sigma": round(s["sigma"], 2), "parameters": s["parameters"],
                 "rho": round(s["rho"], 5) if s["mpo"] else None, "train s (sum of runs)": round(s["seconds"], 1)})
    plots = []
    for path in results["plots"]:  # keep the figures next to the tables
        target = os.path.join(REPO, "bench", "results", f"models_digits_{name}_{os.path.basename(path)}")
        shutil.copyfile(path, target)
        plots.append(os.path.relpath(target, REPO))
    t.notes = notes + [f"trained at commit {results['machine']['commit']}; wall time of the whole command: "
                       f"{wall:.0f} s" + (f"; plots: {', '.join(plots)}" if plots else "")]
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--only", nargs="+", metavar="EXPERIMENT",
                   help="run only these (fc2, fc2_sweep, taylornet_7x7, taylornet_mnist); keep the other tables")
    p.add_argument("--out", default=os.path.join(REPO, "runs", "bench_models_digits"))
    args = p.parse_args()
    exps = experiments(args)
    chains = [c for c in [[n for n in ("fc2", "fc2_sweep") if n in exps]] if c]
    chains += [[n] for n in exps if not n.startswith("fc2")]
    with ThreadPoolExecutor(args.jobs) as pool:
        finished = pool.map(lambda chain: [run(n, exps[n], args.out) for n in chain], chains)
        done = {name: (wall, res) for chain in finished for name, wall, res in chain}
    by = lambda res: {(s["model"], s["bond_dim"]): s for s in res["summaries"]}  # noqa: E731
    tables = {}
    if "fc2" in done:
        wall, res = done["fc2"]
        s = by(res)
        gap = s[("fc2", None)]["mean"] - s[("fc2-mpo", 8)]["mean"]
        tables["fc2"] = table("fc2", "FC2 vs MPO-Net FC2 (D = 8) on digits resized to 28x28, m = 5", wall, res, [
            f"dense - MPO accuracy gap: {gap:+.2f} points (target: within 1 point)",
            f"whole --runs 5 comparison: {wall / 60:.1f} min (target: < 10 min)"])
    for key, label in (("taylornet_7x7", "7x7"), ("taylornet_mnist", "mnist")):
        if key not in done:
            continue
        wall, res = done[key]
        s = by(res)
        cg, conv = s[(f"taylornet-{label}", None)]["mean"], s[(f"taylornet-{label}-conv", None)]["mean"]
        tables[key] = table(key, f"TaylorNet-{label} and its CG->conv ablation on digits", wall, res, [
            f"ablation drop: {cg - conv:.2f} points (paper, MNIST: 7.3)", "target: TaylorNet on digits >= 97%"])
    if "fc2_sweep" in done:
        wall, res = done["fc2_sweep"]
        tables["fc2_sweep"] = table("fc2_sweep", "FC2 MPO-Net vs D on digits (MPO paper Fig. 2), m = 5", wall, res, [])
    out_dir = os.path.join(REPO, "bench", "results")
    kept = previous_tables(os.path.join(out_dir, "models_digits.json")) if args.only else {}
    merged = {name: tables.get(name, t) for name, t in kept.items()}  # keep the earlier order
    merged.update(tables)
    for path in write_results(list(merged.values()), out_dir, "models_digits"):
        print(path)

if __name__ == "__main__":
    main()
