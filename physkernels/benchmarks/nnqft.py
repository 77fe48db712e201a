"""NN-QFT ensemble benchmarks.

* ``fig1``: the Fig. 1 configuration end to end (10 widths, 20 bags x 30000 networks, six points, G^(n) for n <= 4)
  with the fused kernel; quick mode runs a reduced configuration.
* ``loop_vs_fused``: the faithful per-network Python loop of the public NN-QFT code (one ``torch.nn`` network per
  draw, its outputs stacked, then one mean of products per combo) against the plain-torch reference and the fused
  kernel, on one small configuration in the same run; the speedups are ratios of those times.
* ``threads``: network-neuron evaluations per second of the fused kernel on 1 and on all threads, and peak torch
  memory against the reference (which materialises parameter tensors; the kernel never does).
"""

from __future__ import annotations

import itertools
import os
import resource
import time

import numpy as np
import torch

from ..physics import nnqft
from ..physics.nnqft import ensemble
from .. import _extensions
from ..backends import why_unavailable
from .harness import ResultTable, gpu_kernel_backends, median_time, peak_memory_bytes

FIG1_POINTS = [-0.01, -0.006, -0.002, 0.002, 0.006, 0.01]
FIG1_WIDTHS = [2, 3, 4, 5, 10, 20, 50, 100, 500, 1000]


def python_loop_green_functions(points, max_n: int, width: int, n_bags: int, n_nets: int, sigma_w: float = 1.0,
                                sigma_b: float = 1.0, seed: int = 0) -> np.ndarray:
    """What the public NN-QFT code does: a Python loop over networks, each a torch.nn Gauss-net drawn with
    torch.randn, then numpy means of products per combo. Returns (n_bags, n_combos)."""
    torch.manual_seed(seed)
    x = torch.as_tensor(points, dtype=torch.float64).reshape(len(points), -1)
    d_in = x.shape[1]
    norm = torch.exp(sigma_b**2 + sigma_w**2 * (x * x).sum(1, keepdim=True) / d_in)
    combos = [c for n in range(1, max_n + 1) for c in itertools.combinations_with_replacement(range(len(x)), n)]
    out = np.empty((n_bags, len(combos)))
    for bag in range(n_bags):
        outputs = []
        for _ in range(n_nets):
            layer0 = torch.nn.Linear(d_in, width).double()
            layer1 = torch.nn.Linear(width, 1).double()
            with torch.no_grad():
                torch.nn.init.normal_(layer0.weight, std=sigma_w / d_in**0.5)
                torch.nn.init.normal_(layer0.bias, std=sigma_b)
                torch.nn.init.normal_(layer1.weight, std=sigma_w / width**0.5)
                torch.nn.init.normal_(layer1.bias, std=sigma_b)
                outputs.append(layer1(torch.exp(layer0(x)) / norm).squeeze(1).numpy())
        f = np.stack(outputs)
        out[bag] = [np.mean(np.prod(f[:, list(c)], axis=1)) for c in combos]
    return out


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fig1_table(quick: bool) -> ResultTable:
    widths = [2, 10, 100] if quick else FIG1_WIDTHS
    n_bags, n_nets = (4, 2000) if quick else (20, 30000)
    table = ResultTable("nnqft_fig1", f"Fig. 1 end to end ({'reduced' if quick else 'paper'} configuration)",
                        ["width", "n_bags", "n_nets", "seconds", "cpu_seconds", "neuron_evals_per_s", "mean_m4",
                         "exact_m4"])
    total = total_cpu = 0.0
    for i, width in enumerate(widths):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        g = nnqft.green_functions(FIG1_POINTS, 4, width, n_bags, n_nets, 1.0, 1.0, seed=100 + i)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - start_cpu
        total += seconds
        total_cpu += cpu
        rows = g.order(4)
        exact = nnqft.exact_four_point_deviation(FIG1_POINTS, [g.table.combos[r] for r in rows.tolist()], width,
                                                 1.0, 1.0) / g.gaussian[rows]
        table.add(width=width, n_bags=n_bags, n_nets=n_nets, seconds=seconds, cpu_seconds=cpu,
                  neuron_evals_per_s=n_bags * n_nets * width / seconds, mean_m4=g.m[rows].mean().item(),
                  exact_m4=exact.mean().item())
    table.add(width="total", seconds=total, cpu_seconds=total_cpu)
    table.notes += [f"backend {g.backend}, {torch.get_num_threads()} threads, one run per width (not a median); "
                    f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
                    "cpu_seconds: process CPU time (all threads); on a shared machine cpu_seconds / threads is "
                    "the wall time the run needs once it has the cores to itself",
                    "target on a 2-core CPU: the paper configuration in <= 120 s",
                    "exact_m4: the exact finite-width 4th cumulant / G0 (Gauss-net); measured m4 is noisy and "
                    "biased low at small N (log-normal tails)"]
    return table


def _loop_vs_fused_table(quick: bool) -> ResultTable:
    width, n_bags, n_nets = (10, 2, 100) if quick else (10, 2, 1000)
    args = (FIG1_POINTS, 4, width, n_bags, n_nets)
    table = ResultTable("nnqft_loop_vs_fused", f"Per-network Python loop vs fused kernel (N={width}, "
                        f"{n_bags} bags x {n_nets} nets, 6 points, n <= 4)",
                        ["implementation", "seconds", "speedup_vs_loop"])
    loop = median_time(lambda: python_loop_green_functions(*args), repeats=3, warmup=0, max_seconds=5)
    rows = [("python loop (public code)", loop),
            ("plain-torch reference, green_functions", median_time(
                lambda: nnqft.green_functions(*args, backend="reference"), repeats=3, warmup=1))]
    if why_unavailable("cpp") is None:
        pts = torch.tensor(FIG1_POINTS, dtype=torch.float64)[:, None]
        law, combos = nnqft.NetworkLaw(width), nnqft.ComboTable(len(FIG1_POINTS), 4)
        rows += [("fused C++ kernel, green_functions", median_time(
                     lambda: nnqft.green_functions(*args, backend="cpp"))),
                 ("fused C++ kernel only (bag sums)", median_time(
                     lambda: ensemble.bag_sums(pts, law, 0, n_bags, n_nets, combos, "cpp")))]
        previous = torch.get_num_threads()
        try:  # one thread: no OpenMP barrier, which an oversubscribed machine can stall for a scheduler slice
            torch.set_num_threads(1)
            rows.append(("fused C++ kernel only, 1 thread", median_time(
                lambda: ensemble.bag_sums(pts, law, 0, n_bags, n_nets, combos, "cpp"))))
        finally:
            torch.set_num_threads(previous)
    for name, seconds in rows:
        table.add(implementation=name, seconds=seconds, speedup_vs_loop=loop / seconds)
    table.notes += ["all timed in this run; speedup = loop seconds / implementation seconds; green_functions "
                    "adds the Wick G0 and combo table (fixed Python cost) to the kernel",
                    "1-thread row: on an oversubscribed machine a 2-thread OpenMP barrier can wait a scheduler "
                    "slice; the kernel now runs calls this small on one thread"]
    return table


def _threads_table(quick: bool) -> ResultTable:
    width, n_nets = (100, 2000) if quick else (1000, 20000)
    pts = torch.tensor(FIG1_POINTS, dtype=torch.float64)[:, None]
    law = nnqft.NetworkLaw(width)
    table_combos = nnqft.ComboTable(len(FIG1_POINTS), 4)
    table = ResultTable("nnqft_threads", f"Fused kernel throughput and memory (N={width}, {n_nets} nets)",
                        ["backend", "threads", "seconds", "neuron_evals_per_s", "peak_torch_bytes"])
    previous = torch.get_num_threads()
    try:
        for threads in sorted({1, previous}):
            torch.set_num_threads(threads)
            fn = lambda: ensemble.bag_sums(pts, law, 0, 1, n_nets, table_combos, "cpp")  # noqa: E731
            seconds = median_time(fn, repeats=3, warmup=1)
            table.add(backend="cpp", threads=threads, seconds=seconds, neuron_evals_per_s=n_nets * width / seconds,
                      peak_torch_bytes=peak_memory_bytes(fn))
    finally:
        torch.set_num_threads(previous)
    small = max(256, n_nets // 10)
    fn = lambda: ensemble.bag_sums(pts, law, 0, 1, small, table_combos, "reference")  # noqa: E731
    seconds = median_time(fn, repeats=3, warmup=0)
    table.add(backend=f"reference ({small} nets)", threads=previous, seconds=seconds,
              neuron_evals_per_s=small * width / seconds, peak_torch_bytes=peak_memory_bytes(fn))
    table.notes += ["peak_torch_bytes: torch allocations during the call (the kernel's only scratch is the "
                    "per-chunk partial sums)",
                    f"CPU kernel instruction set: {_extensions.cpu().nnqft.isa()}"]
    return table


def _gpu_table(quick: bool) -> ResultTable:
    """Bag sums of the Fig. 1 points on the GPU (CUDA C++ and Triton kernels) against the C++ kernel on this
    machine's CPU threads, same networks, same run; and the Fig. 1 paper configuration end to end on the GPU."""
    n_nets = 20000 if quick else 300000
    table = ResultTable("nnqft_gpu", f"Ensemble kernels on the GPU vs the C++ kernel ({n_nets} nets, 6 points, "
                        "n <= 4)", ["width", "backend", "device", "seconds", "neuron_evals_per_s", "speedup_vs_cpp"])
    table_combos = nnqft.ComboTable(len(FIG1_POINTS), 4)
    for width in (10, 1000):
        law = nnqft.NetworkLaw(width)
        runs = [("cpp", "cpu")] if why_unavailable("cpp") is None else []
        runs += [(b, "cuda") for b in gpu_kernel_backends()]
        times = {}
        for backend, device in runs:
            pts = torch.tensor(FIG1_POINTS, dtype=torch.float64, device=device)[:, None]
            times[backend] = median_time(lambda: ensemble.bag_sums(pts, law, 0, 1, n_nets, table_combos, backend),
                                         device=device, repeats=5, warmup=1)
            table.add(width=width, backend=backend, device=device, seconds=times[backend],
                      neuron_evals_per_s=n_nets * width / times[backend],
                      speedup_vs_cpp=times["cpp"] / times[backend] if "cpp" in times else None)
    if not quick:
        widths, n_bags, fig1_nets = FIG1_WIDTHS, 20, 30000
        pts = torch.tensor(FIG1_POINTS, dtype=torch.float64, device="cuda")[:, None]
        start = time.perf_counter()
        for i, width in enumerate(widths):
            nnqft.green_functions(pts, 4, width, n_bags, fig1_nets, 1.0, 1.0, seed=100 + i)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        table.add(width="Fig. 1 (all 10 widths)", backend="auto", device="cuda", seconds=seconds,
                  neuron_evals_per_s=n_bags * fig1_nets * sum(widths) / seconds)
    table.notes += [f"C++ on {torch.get_num_threads()} CPU threads of this machine; medians of 5 calls",
                    "Fig. 1 row: the paper configuration (20 bags x 30000 nets per width) end to end, one run"]
    return table


def run(quick: bool, device: str) -> list[ResultTable]:
    if torch.device(device).type == "cuda":
        return [_gpu_table(quick)]
    return [_loop_vs_fused_table(quick), _threads_table(quick), _fig1_table(quick)]
