"""The ``physkernels`` command: ``physkernels info`` and ``physkernels bench [--quick] [--suite NAME ...]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch


def _default_out_dir() -> str:
    """``$PHYSKERNELS_BENCH_OUT``, else ``$XDG_CACHE_HOME/physkernels/bench`` (``~/.cache/...``): outside any source
    tree, so a run never overwrites the repository's committed ``bench/results`` (pass ``--out bench/results`` to
    update those on purpose)."""
    if os.environ.get("PHYSKERNELS_BENCH_OUT"):
        return os.environ["PHYSKERNELS_BENCH_OUT"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "physkernels", "bench")


def _bench(args: argparse.Namespace) -> int:
    from . import benchmarks
    from .benchmarks import verdict
    from .benchmarks.harness import write_results

    names = args.suite or list(benchmarks.SUITES)
    unknown = [n for n in names if n not in benchmarks.SUITES]
    if unknown:
        print(f"unknown suite(s) {unknown}; available: {list(benchmarks.SUITES)}", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tables = []
    for name in names:
        start = time.perf_counter()
        print(f"== {name} ({'quick' if args.quick else 'full'}, {device})", flush=True)
        suite_tables = benchmarks.load_suite(name).run(quick=args.quick, device=device)
        if args.tables:
            for t in suite_tables:
                print("\n" + t.markdown() + "\n", flush=True)
        print(f"   {name}: {len(suite_tables)} table(s) in {time.perf_counter() - start:.1f} s", flush=True)
        tables += suite_tables
    if not args.no_verdict:
        print("== verdict (interleaved headline comparisons)", flush=True)
        timing = dict(rounds=5, min_run_time=0.01) if args.quick else dict(rounds=9, min_run_time=0.1)
        summary = verdict.table(verdict.headlines(names, device), device=device, **timing)
        tables.append(summary)
    stem = args.stem or ("quick" if args.quick else "full") + f"_{device}"
    json_path, md_path = write_results(tables, args.out or _default_out_dir(), stem)
    print(f"full tables: {md_path} (and {os.path.basename(json_path)})\n")
    if not args.no_verdict:
        print(summary.markdown(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="physkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends, compile flags, threads")
    bench = sub.add_parser("bench", help="kernel-vs-baseline benchmarks for this device")
    bench.add_argument("--quick", action="store_true", help="small shapes, few repeats (about a minute on a CPU)")
    bench.add_argument("--suite", nargs="+", help="suites to run (default: all)")
    bench.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    bench.add_argument("--out", help="results folder (default: $PHYSKERNELS_BENCH_OUT or ~/.cache/physkernels/bench; "
                                     "the repository's committed tables live in bench/results)")
    bench.add_argument("--stem", help="results file name without extension")
    bench.add_argument("--tables", action="store_true", help="also print every suite's full tables")
    bench.add_argument("--no-verdict", action="store_true",
                       help="skip the closing verdict table (one interleaved headline comparison per suite)")
    args = parser.parse_args(argv)
    if args.command == "info":
        from . import info

        print(json.dumps(info(), indent=2, default=str))
        return 0
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
