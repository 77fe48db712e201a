"""2D Ising Monte Carlo: spin updates per nanosecond per algorithm vs a plain numpy checkerboard Metropolis.

All rates come from the same run on the same machine (L = 32, many chains). "updates" are attempted single-spin
updates for Metropolis, site updates of a full sweep for Swendsen-Wang and spins actually flipped for Wolff (a
Wolff step of ``ceil(L^2 / <cluster>)`` flips touches about ``L^2`` spins). The full run also times the 30000-
sample decorrelated beta = 0.4352 data set (Wolff).
"""

from __future__ import annotations

import importlib.util
import time

import torch

from ..physics.ising import engines
from .harness import ResultTable, median_time

BETA = 0.4352


def _time_per_update(engine, steps: int, updates: float, max_seconds: float,
                     device: str = "cpu") -> tuple[float, float]:
    """(updates per wall ns, updates per ns of this process's CPU time summed over its threads)."""
    engine.run(steps)
    cpu = []

    def timed():
        start = time.process_time()
        engine.run(steps)
        cpu.append(time.process_time() - start)

    seconds = median_time(timed, device=device, warmup=0, repeats=5, max_seconds=max_seconds)
    return updates / (seconds * 1e9), updates / (sorted(cpu)[len(cpu) // 2] * 1e9)


def _wolff_rate(L: int, n_chains: int, steps: int) -> tuple[float, float]:
    engine = engines.CppWolffEngine(L, BETA, n_chains, seed=0)
    engine.run(50)
    sites, flips = engine.cluster_counts()
    engine.set_flips_per_step(max(1, round(L * L * flips / max(1, sites))))
    engine.run(steps)
    s0, _ = engine.cluster_counts()
    start, cpu_start = time.perf_counter(), time.process_time()
    engine.run(steps)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    s1, _ = engine.cluster_counts()
    return (s1 - s0) / (seconds * 1e9), (s1 - s0) / (cpu * 1e9)


def run(quick: bool, device: str) -> list[ResultTable]:
    L = 32
    budget = 1.5 if quick else 5.0
    table = ResultTable(
        name="ising_mc", title=f"2D Ising Monte Carlo, L={L}, beta={BETA} (spin updates per ns)",
        columns=["algorithm", "backend", "chains", "threads", "updates_per_ns", "updates_per_cpu_ns",
                 "speedup_vs_numpy"],
        notes=["numpy baseline: vectorised checkerboard Metropolis over 64 chains (one float uniform per spin)",
               "Metropolis (C++): 64 chains per uint64 word, bitwise neighbour sums, counter-based RNG, OpenMP; "
               "cuda / triton: the same update and random numbers on the GPU (one host thread)",
               "Wolff: spins flipped per ns; Swendsen-Wang: site updates per ns",
               "updates_per_ns: wall clock; updates_per_cpu_ns: per ns of this process's CPU time summed over its "
               "threads (robust on a shared machine; x cores for a quiet machine's wall rate)"])
    n_sites = L * L
    ref_chains, ref_steps = 64, (2 if quick else 10)
    ref = engines.ReferenceMetropolisEngine(L, BETA, ref_chains, seed=0)
    baseline, baseline_cpu = _time_per_update(ref, ref_steps, ref_chains * n_sites * ref_steps, budget)
    table.add(algorithm="metropolis", backend="numpy", chains=ref_chains, threads=1, updates_per_ns=baseline,
              updates_per_cpu_ns=baseline_cpu, speedup_vs_numpy=1.0)
    rows = []
    if engines.CppMetropolisEngine.available():
        chains, steps = (1024, 20) if quick else (4096, 50)
        rates = _time_per_update(engines.CppMetropolisEngine(L, BETA, chains, seed=0), steps,
                                 chains * n_sites * steps, budget)
        rows.append(("metropolis", "cpp (multispin)", chains, rates))
        chains, steps = (256, 5) if quick else (1024, 20)
        rows.append(("wolff", "cpp", chains, _wolff_rate(L, chains, steps)))
        rates = _time_per_update(engines.CppSwendsenWangEngine(L, BETA, chains, seed=0), steps,
                                 chains * n_sites * steps, budget)
        rows.append(("swendsen_wang", "cpp", chains, rates))
    if torch.device(device).type == "cuda":
        chains, steps = 1 << 16, 100
        for name, cls in (("cuda (multispin)", engines.CudaMetropolisEngine),
                          ("triton (multispin)", engines.TritonMetropolisEngine)):
            if cls.available():
                rate, _ = _time_per_update(cls(L, BETA, chains, seed=0), steps, chains * n_sites * steps, budget,
                                           device)
                rows.append(("metropolis", name, chains, (rate, None)))
    sw_ref_chains = 64
    if importlib.util.find_spec("scipy") is not None:
        rates = _time_per_update(engines.ReferenceSwendsenWangEngine(L, BETA, sw_ref_chains, seed=0), ref_steps,
                                 sw_ref_chains * n_sites * ref_steps, budget)
        rows.append(("swendsen_wang", "numpy (scipy csgraph)", sw_ref_chains, rates))
    else:
        table.notes.append("the numpy Swendsen-Wang row needs scipy, which is not installed: "
                           "pip install 'physkernels[models]'")
    for algorithm, backend, chains, (rate, cpu_rate) in rows:
        table.add(algorithm=algorithm, backend=backend, chains=chains,
                  threads=1 if backend.startswith(("numpy", "cuda", "triton")) else torch.get_num_threads(),
                  updates_per_ns=rate,
                  updates_per_cpu_ns=cpu_rate, speedup_vs_numpy=rate / baseline)
    tables = [table]
    if not quick and engines.CppWolffEngine.available():
        from ..physics.ising.datasets import critical_dataset

        data = critical_dataset(progress=False)
        meta = data["meta"]
        ds = ResultTable(name="ising_dataset", title="30000 decorrelated 32x32 samples at beta=0.4352 (+2 decimations)",
                         columns=["algorithm", "n_samples", "tau_energy", "tau_abs_m", "spacing", "wall_s"],
                         notes=["target: <= 300 s on a 2-core machine; tau and spacing in Wolff steps"])
        ds.add(algorithm=meta["algorithm"], n_samples=meta["n_samples"], tau_energy=meta["tau_energy"],
               tau_abs_m=meta["tau_abs_magnetization"], spacing=meta["spacing"], wall_s=meta["wall_time_s"])
        tables.append(ds)
    return tables
