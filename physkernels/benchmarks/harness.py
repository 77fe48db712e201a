"""Timing, peak-memory and result-writing helpers shared by every benchmark suite.

Times are medians over repeats of the same callable, in the same process, so ratios between a kernel and its
baseline come from one run. Results are written as JSON plus a markdown table, stamped with the machine, the
date and the git commit.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.utils.benchmark as tbench

from ..backends import use_backend, why_unavailable


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], Any], *, device="cpu", warmup: int = 2, repeats: int = 7,
                max_seconds: float = 5.0) -> float:
    """Median wall time (seconds) of ``fn()`` over ``repeats`` runs (fewer if ``max_seconds`` runs out, >= 3)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    budget_end = time.perf_counter() + max_seconds
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
        if i >= 2 and time.perf_counter() > budget_end:
            break
    return statistics.median(samples)


def interleaved_seconds(run_ours: Callable[[], Any], run_baseline: Callable[[], Any], *, rounds: int = 7,
                        min_run_time: float = 0.05, device: str = "cpu") -> tuple[list[float], list[float]]:
    """Per-round seconds of one call of ``run_ours`` and of ``run_baseline``, in alternating rounds (each a
    ``blocked_autorange`` median of ``min_run_time`` seconds), after one warm-up call of each."""
    def seconds(fn):
        def call():
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
        return tbench.Timer(stmt="call()", globals={"call": call},
                            num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=min_run_time).median

    run_ours(), run_baseline()  # warm-up: first-call costs (planning, compilation, allocation) are not measured
    ours, baseline = [], []
    for _ in range(rounds):
        ours.append(seconds(run_ours))
        baseline.append(seconds(run_baseline))
    return ours, baseline


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """``(q1, median, q3)`` of ``values`` (inclusive method; one value is its own quartiles)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def gpu_kernel_backends() -> tuple[str, ...]:
    """The GPU kernel backends (``cuda``, ``triton``) that can run in this process."""
    return tuple(b for b in ("cuda", "triton") if why_unavailable(b, "cuda") is None)


def backend_comparison_table(name: str, title: str, key_columns: list[str],
                             cases: Iterable[tuple[dict, Callable[[], Any], Callable[[], Any]]],
                             **timing) -> "ResultTable":
    """fwd (no grad) and fwd+bwd milliseconds of every GPU kernel backend, same inputs, same run: the measurement
    behind a GPU ``auto`` order. ``cases`` yields (values of ``key_columns``, fwd callable, fwd+bwd callable); each
    callable is timed under ``physkernels.use_backend`` of each backend."""
    backends = gpu_kernel_backends()
    table = ResultTable(name, title, key_columns + [f"{b} {w}" for b in backends for w in ("fwd", "fwd+bwd")],
                        notes=["fwd: forward under no_grad; fwd+bwd: one training step; medians, same run"])
    for keys, fwd, step in cases:
        row = dict(keys)
        for what, fn in (("fwd", fwd), ("fwd+bwd", step)):
            for backend in backends:
                with use_backend(backend):
                    row[f"{backend} {what}"] = median_time(fn, device="cuda", **timing) * 1e3
        table.add(**row)
    return table


def compiled_reference_table(name: str, title: str, key_columns: list[str],
                             cases: Iterable[tuple[dict, Callable[[], Any], Callable[[], Any]]],
                             rounds: int = 5) -> "ResultTable":
    """Our op's fwd+bwd against ``torch.compile`` of the plain-torch reference (what a user would write and compile
    instead), interleaved rounds in one run. ``cases`` yields (values of ``key_columns``, our step, the compiled
    reference's step); the first call of the compiled step compiles it (not timed). A reference that fails to
    compile is reported in its row."""
    table = ResultTable(name, title, key_columns + ["ours fwd+bwd ms", "compiled reference fwd+bwd ms",
                                                    "compiled/ours (median)", "IQR"],
                        notes=["compiled reference: torch.compile (default mode, dynamic shapes) of the op's "
                               "plain-torch formula; > 1: ours is faster; medians and quartiles of the per-round "
                               "ratio over interleaved rounds"])
    for keys, ours, compiled in cases:
        row = dict(keys)
        try:
            compiled()
        except Exception as error:  # a reference torch.compile cannot build is a finding: report it
            row["compiled reference fwd+bwd ms"] = f"compile fails: {type(error).__name__}"
            table.add(**row)
            continue
        device = "cuda" if torch.cuda.is_available() else "cpu"
        t_ours, t_ref = interleaved_seconds(ours, compiled, rounds=rounds, min_run_time=0.1, device=device)
        q1, median, q3 = quartiles([r / o for o, r in zip(t_ours, t_ref)])
        row.update({"ours fwd+bwd ms": quartiles(t_ours)[1] * 1e3,
                    "compiled reference fwd+bwd ms": quartiles(t_ref)[1] * 1e3,
                    "compiled/ours (median)": median, "IQR": f"{q1:.3g}-{q3:.3g}"})
        table.add(**row)
    return table


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null (the profiler's C++ side logs every start/stop there)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory_bytes(fn: Callable[[], Any], *, device="cpu") -> int:
    """Peak bytes held by torch allocations made during ``fn()``, above what was live when it started.

    CUDA: the caching allocator's peak counter. CPU: the profiler's allocation events (every torch tensor
    allocation and free on the CPU allocator), replayed in order.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def machine_info() -> dict[str, Any]:
    """Where and when a benchmark ran."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


@dataclass
class ResultTable:
    """One benchmark table: ``rows`` are dicts sharing ``columns``; ``notes`` explain the columns."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def markdown(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
            return "" if v is None else str(v)

        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(fmt(r.get(c)) for c in self.columns) + " |" for r in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def write_results(tables: list[ResultTable], out_dir: str, stem: str) -> tuple[str, str]:
    """Write ``<stem>.json`` and ``<stem>.md`` (atomically) under ``out_dir``; return both paths."""
    os.makedirs(out_dir, exist_ok=True)
    machine = machine_info()
    payload = {"machine": machine, "tables": [
        {"name": t.name, "title": t.title, "columns": t.columns, "rows": t.rows, "notes": t.notes} for t in tables]}
    header = (f"_Machine: {machine['cpu']} ({machine['cores']} cores, {machine['threads']} threads)"
              + (f", GPU {machine['gpu']}" if "gpu" in machine else "")
              + f"; torch {machine['torch']}; {machine['date']}; commit {machine['commit']}_")
    md = "\n\n".join([header] + [t.markdown() for t in tables]) + "\n"
    paths = []
    for ext, text in (("json", json.dumps(payload, indent=2, default=str)), ("md", md)):
        path = os.path.join(out_dir, f"{stem}.{ext}")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]
