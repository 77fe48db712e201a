"""Benchmark suite ``models``: one full training step of every MPO-Net and TaylorNet against its dense twin.

    python bench/model_steps.py [--device cpu|cuda] [--quick] [--models fc2-mpo lenet5-mpo ...] [--batch N]

A step is what a training loop runs per batch: ``zero_grad``, forward, cross entropy, backward and the preset's
SGD step (its momentum / Nesterov; the learning rate is set tiny so that thousands of timed steps cannot make the
weights diverge, which does not change the work). Pairs: every ``-mpo`` model of ``models.registry`` against the
same name without ``-mpo`` (nn.Linear / nn.Conv2d where the MPO-Net has MPO layers), and every TaylorNet against
its CG->conv ablation ``-conv`` (the same net with each CG2d replaced by a convolution of the same shape). The batch
is the paper's (the training preset's, 100) unless ``--batch`` is given; float32.

Times come from :func:`physkernels.benchmarks.harness.interleaved_seconds` (ours, twin, ours, twin, ... in one
process): medians of the per-round times, and the per-round ratio ``twin time / our time`` with its quartiles.
On CUDA two more measurements per pair: GPU operations (kernels, memcpys, memsets) per step from the profiler, and
the step captured whole in a CUDA graph (forward, backward and optimizer step) and replayed; a capture that fails
is reported with its error. Each pair runs in a fresh process (a pair that runs out of memory becomes a row that
says so) and the table is rewritten after every pair. Results: ``bench/results/models_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from models.presets import PRESETS  # noqa: E402
from models.registry import MODELS  # noqa: E402
from physkernels.benchmarks.harness import (ResultTable, _native_stderr_silenced, interleaved_seconds,  # noqa: E402
                                             quartiles, write_results)
from physkernels.benchmarks.verdict import verdict  # noqa: E402

QUICK_PAIRS = [("fc2-mpo", "fc2"), ("taylornet-7x7", "taylornet-7x7-conv")]
NUM_CLASSES = 10


def pairs() -> list[tuple[str, str]]:
    """(ours, twin) for every MPO-Net and TaylorNet of the registry."""
    found = [(name, spec.twin) for name, spec in MODELS.items() if spec.mpo]
    found += [(name, f"{name}-conv") for name in MODELS
              if name.startswith("taylornet-") and not name.endswith("-conv")]
    return found


class TrainingStep:
    """One model with its optimizer and a fixed random batch; calling it runs one training step."""

    def __init__(self, name: str, batch: int, device: str, seed: int = 0):
        spec = MODELS[name]
        torch.manual_seed(seed)
        self.model = spec.build().to(device).train()
        preset = PRESETS[spec.preset]
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-6, momentum=preset.momentum,
                                         nesterov=preset.nesterov)
        gen = torch.Generator().manual_seed(seed + 1)
        self.x = torch.randn(batch, *spec.input_shape, generator=gen).to(device)
        self.y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(device)
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def loss_and_backward(self) -> None:
        F.cross_entropy(self.model(self.x), self.y).backward()

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_and_backward()
        self.optimizer.step()

    def cuda_graph(self):
        """The whole step captured in a CUDA graph (PyTorch's whole-network capture recipe); returns its replay."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self.loss_and_backward()
            self.optimizer.step()
        return graph.replay


def gpu_operations_per_call(fn) -> int:
    """Kernels, memcpys and memsets one call of ``fn`` puts on the GPU (torch.profiler's CUDA activity)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def _pair_row(ours_name: str, twin_name: str, size: int, device: str, rounds: int, min_run_time: float) -> dict:
    """The table row of one (ours, twin) pair (see the module docstring)."""
    ours, twin = TrainingStep(ours_name, size, device), TrainingStep(twin_name, size, device)
    ours_s, twin_s = interleaved_seconds(ours, twin, rounds=rounds, min_run_time=min_run_time, device=device)
    q1, median, q3 = quartiles([t / o for o, t in zip(ours_s, twin_s)])
    row = {"model": ours_name, "twin": twin_name, "batch": size, "params": ours.parameters,
           "twin params": twin.parameters, "ours ms (IQR)": _ms_summary(ours_s),
           "twin ms (IQR)": _ms_summary(twin_s), "twin/ours (median)": float(f"{median:.3g}"),
           "IQR": f"{q1:.3g}-{q3:.3g}", "verdict": verdict(q1, q3)}
    if device == "cuda":
        row["GPU ops per step (ours / twin)"] = f"{gpu_operations_per_call(ours)} / {gpu_operations_per_call(twin)}"
        try:
            replays = ours.cuda_graph(), twin.cuda_graph()
        except Exception as error:  # a capture failure is a finding: report it in the table
            row["graph replay ms (ours / twin)"] = f"capture fails: {type(error).__name__}: {error}"[:160]
            row["graph twin/ours"] = "n/a"
        else:
            g_ours, g_twin = interleaved_seconds(*replays, rounds=rounds, min_run_time=min_run_time, device=device)
            gq1, gmedian, gq3 = quartiles([t / o for o, t in zip(g_ours, g_twin)])
            row["graph replay ms (ours / twin)"] = f"{_ms(quartiles(g_ours)[1])} / {_ms(quartiles(g_twin)[1])}"
            row["graph twin/ours"] = f"{gmedian:.3g} ({gq1:.3g}-{gq3:.3g})"
    return row


def _row_in_child(ours_name, twin_name, size, device, rounds, min_run_time) -> dict:
    """:func:`_pair_row` in a fresh process: a pair that runs out of memory (the kernel kills a CPU process) or
    crashes becomes a row that says so, and the pairs after it still run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "row.json")
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--row", ours_name, twin_name, path,
                                "--device", device, "--batch", str(size), "--rounds", str(rounds),
                                "--min-run-time", str(min_run_time)], capture_output=True, text=True)
        if child.returncode == 0 and os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    why = (f"killed by signal {-child.returncode} (out of memory?)" if child.returncode < 0
           else (child.stderr.strip().splitlines() or ["no output"])[-1][:160])
    return {"model": ours_name, "twin": twin_name, "batch": size, "verdict": f"not measured: {why}"}


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _ms_summary(seconds: list[float]) -> str:
    q1, median, q3 = quartiles(seconds)
    return f"{_ms(median)} ({_ms(q1)}-{_ms(q3)})"


def run(quick: bool, device: str, names: list[str] | None = None, batch: int | None = None,
        rounds: int | None = None, out: tuple[str, str] | None = None) -> list[ResultTable]:
    """The ``models`` table; with ``out = (folder, stem)`` it is rewritten there after every pair."""
    selected = QUICK_PAIRS if quick and not names else [p for p in pairs() if not names or p[0] in names]
    if names:
        unknown = sorted(set(names) - {p[0] for p in pairs()})
        if unknown:
            raise ValueError(f"models: unknown MPO-Net/TaylorNet {unknown}; available: {[p[0] for p in pairs()]}")
    batch = batch or (8 if quick else None)
    rounds = rounds or (3 if quick else 7)
    min_run_time = 0.02 if quick else 0.2
    on_gpu = device == "cuda"
    columns = ["model", "twin", "batch", "params", "twin params", "ours ms (IQR)", "twin ms (IQR)",
               "twin/ours (median)", "IQR", "verdict"]
    if on_gpu:
        columns += ["GPU ops per step (ours / twin)", "graph replay ms (ours / twin)", "graph twin/ours"]
    table = ResultTable("models", f"Training step of the papers' models vs their dense twins ({device}, float32)",
                        columns)
    table.notes += [
        "step: zero_grad, forward, cross entropy, backward, SGD step (the preset's momentum); random inputs and "
        "labels; times are medians of interleaved rounds (ours, twin, ...) in one process, with their quartiles",
        "twin/ours > 1: our model's step is faster; verdict only when the whole IQR of the per-round ratio is on "
        "one side of 1",
        f"{rounds} rounds of torch.utils.benchmark blocked_autorange ({min_run_time} s each); torch threads: "
        f"{torch.get_num_threads()}",
    ]
    if on_gpu:
        table.notes.append("GPU ops: kernels + memcpys + memsets of one step (profiler); graph: the whole step "
                           "captured in one CUDA graph and replayed, interleaved the same way")
    for ours_name, twin_name in tqdm(selected, desc="models bench", leave=False):
        size = batch or PRESETS[MODELS[ours_name].preset].batch_size
        table.add(**_row_in_child(ours_name, twin_name, size, device, rounds, min_run_time))
        if out is not None:  # every finished row is on disk at once
            write_results([table], *out)
    return [table]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="two small pairs at batch 8 (a smoke run)")
    parser.add_argument("--models", nargs="+", help="MPO-Net / TaylorNet names (default: every one)")
    parser.add_argument("--batch", type=int, help="batch size (default: the paper's, 100)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; 3 with --quick)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    parser.add_argument("--stem", help="file stem (default models_<device>)")
    parser.add_argument("--row", nargs=3, metavar=("OURS", "TWIN", "JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--min-run-time", type=float, default=0.2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:  # one pair, in the child process of _row_in_child
        ours_name, twin_name, path = args.row
        row = _pair_row(ours_name, twin_name, args.batch, args.device, args.rounds, args.min_run_time)
        with open(path, "w") as f:
            json.dump(row, f)
        return
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch must be a positive integer, got {args.batch}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device in this process")
    stem = args.stem or f"models_{args.device}"
    tables = run(args.quick, args.device, args.models, args.batch, args.rounds, out=(args.out, stem))
    json_path, md_path = write_results(tables, args.out, stem)
    print(open(md_path).read())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
