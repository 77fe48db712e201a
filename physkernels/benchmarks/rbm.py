"""Benchmark of the fused RBM block-Gibbs kernel: chain-steps per second of each backend vs the plain torch
reference, measured in the same run (Ising-sized RBMs: 16 and 1024 visible units)."""

from __future__ import annotations

import torch

from ..backends import available_backends
from ..physics.rbm import BernoulliRBM, gibbs
from .harness import ResultTable, median_time


def _triton_max_units() -> int:
    from ..physics.rbm.triton_kernels import MAX_UNITS

    return MAX_UNITS


def run(quick: bool, device: str = "cpu") -> list[ResultTable]:
    configs = [(16, 16, 2048, 10), (1024, 256, 128, 2)] if quick else \
        [(16, 16, 4096, 50), (16, 64, 16384, 20), (1024, 256, 1024, 5), (1024, 512, 1024, 5)]
    backends = [b for b in ("reference", "cpp", "triton") if b in available_backends(device)
                and not (b == "triton" and device == "cpu")]
    table = ResultTable("rbm_gibbs", f"RBM block-Gibbs sampling ({device}, float32)",
                        ["nv", "nh", "chains", "k", "backend", "ms", "chain_steps_per_s", "speedup_vs_reference"],
                        notes=["chain step = one full v -> h -> v update of one chain; median of repeats",
                               "triton holds W on chip: RBMs over 128 units have no triton row",
                               "speedup = reference time / backend time, same process and inputs"])
    for nv, nh, chains, k in configs:
        rbm = BernoulliRBM(nv, nh, seed=0, init_std=0.1).to(device)
        v0 = torch.bernoulli(torch.full((chains, nv), 0.5, device=device))
        times = {}
        for backend in [b for b in backends if b != "triton" or max(nv, nh) <= _triton_max_units()]:
            times[backend] = median_time(lambda: gibbs(v0, rbm.W, rbm.b, rbm.c, k, 0, 0, backend), device=device,
                                         warmup=1, repeats=3 if quick else 7, max_seconds=2 if quick else 10)
            table.add(nv=nv, nh=nh, chains=chains, k=k, backend=backend, ms=times[backend] * 1e3,
                      chain_steps_per_s=chains * k / times[backend],
                      speedup_vs_reference=times["reference"] / times[backend])
    return [table]
