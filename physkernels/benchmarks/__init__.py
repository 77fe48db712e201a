"""Benchmark suites behind ``physkernels bench``.

Each suite module exposes ``run(quick: bool, device: str) -> list[ResultTable]``; ``quick`` must finish in a few
seconds to tens of seconds on a 2-core CPU so that ``physkernels bench --quick`` stays under two minutes.
"""

from __future__ import annotations

import importlib

# name -> module; suites listed here run in this order.
SUITES: dict[str, str] = {
    name: f"physkernels.benchmarks.{name}" for name in ("mpo", "cg2d", "taylor", "nnqft", "ising", "rbm")
}


def load_suite(name: str):
    if name not in SUITES:
        raise ValueError(f"unknown benchmark suite {name!r}; available: {sorted(SUITES)}")
    return importlib.import_module(SUITES[name])
