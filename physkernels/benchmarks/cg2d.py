"""Benchmark suite ``cg2d``: the fused CG2d op against the unfold formulation and against nn.Conv2d.

Shapes are TaylorNet's layers (paper Fig. 5 and 12), written CG(kh, kw, channels, stride_h, stride_w[, dilation]):
CG(2,2,64,2,2) on 64x28x28 (MNIST) and 64x32x32 (CIFAR), CG(2,2,128,1,1) on 128x8x8, diCG(2,2,64,1,1,7) on
64x14x14 and diCG(2,2,128,1,1,4) on 128x7x7 (the 7x7 map CG3 leaves in the CIFAR net), at batch 1, 32 and 128.

For each shape the same process times forward, backward (all gradients, from a retained graph) and forward+backward,
and measures the peak memory of forward+backward, for: ``cg2d`` (the auto backend: C++ on CPU, CUDA/Triton on a GPU),
``unfold`` (unfold -> pairwise products -> matmul, autograd) and ``conv`` (nn.functional.conv2d of the same
shape, the yardstick). A 2x2 second-order layer does F/P = 14/4 = 3.5x a convolution's multiply-adds, so the
FLOP-proportional time is 3.5x conv's; the targets are fwd+bwd >= 3x faster than unfold, time <= 1.3 x 3.5 x conv's
and peak memory <= 1.5x conv's. Ratios come from one run, the implementations timed in interleaved rounds.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..ops.cg2d import cg2d, num_pairs, unfold_cg2d
from .harness import (ResultTable, backend_comparison_table, compiled_reference_table, median_time,
                      peak_memory_bytes)

# name, channels, input size, stride, dilation (2x2 kernels, no padding, C_out = C_in)
SHAPES = [
    ("CG(2,2,64,2,2) 64x28x28", 64, 28, 2, 1),
    ("CG(2,2,64,2,2) 64x32x32", 64, 32, 2, 1),
    ("CG(2,2,128,1,1) 128x8x8", 128, 8, 1, 1),
    ("diCG(2,2,64,1,1,7) 64x14x14", 64, 14, 1, 7),
    ("diCG(2,2,128,1,1,4) 128x7x7", 128, 7, 1, 4),
]
FLOP_RATIO = 3.5  # (P + P(P+1)/2) / P for P = 4
TIME_SLACK = 1.3
SPEEDUP_TARGET = 3.0
FEATURES = 4 + num_pairs(4)  # Taylor terms per channel of a 2x2 patch


def _step_flops(channels, size, stride, dilation, batch) -> float:
    """Floating-point operations of one fwd+bwd (forward, dW and dx GEMMs: 3 x 2 x C_out x C_in x F x positions);
    unfold does the same GEMMs, so it is the work any implementation of the dense layer must do."""
    out = (size - dilation - 1) // stride + 1
    return 3 * 2 * channels * channels * FEATURES * batch * out * out


def _memory_floor_bytes(channels, size, stride, dilation, batch) -> int:
    """Bytes every implementation holds at the end of a fwd+bwd: y, dx, dW1, dW2 and dbias (float32) are all alive
    when the gradients are returned, so no kernel can peak lower."""
    out = (size - dilation - 1) // stride + 1
    return 4 * (batch * channels * (out * out + size * size) + channels * channels * FEATURES + channels)


def _sgemm_gflops(device: str) -> float:
    """This machine's float32 GEMM rate (torch.mm, 1024^3, current thread count): the yardstick for a kernel's rate."""
    a, b = torch.randn(1024, 1024, device=device), torch.randn(1024, 1024, device=device)
    return 2 * 1024 ** 3 / median_time(lambda: torch.mm(a, b), device=device, warmup=2, repeats=7) / 1e9


def _problem(channels, size, stride, dilation, batch, device, seed=0):
    """Inputs of one shape and the three implementations as closures over them."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device).requires_grad_()

    x = rnd(batch, channels, size, size)
    w1 = rnd(channels, channels, 2, 2, scale=0.1)
    w2 = rnd(channels, channels, num_pairs(4), scale=0.05)
    bias = rnd(channels, scale=0.1)
    geo = dict(stride=stride, padding=0, dilation=dilation)
    impls = {
        "cg2d": ((x, w1, w2, bias), lambda: cg2d(x, w1, w2, bias, **geo)),
        "unfold": ((x, w1, w2, bias), lambda: unfold_cg2d(x, w1, w2, None, bias, **geo)),
        "conv": ((x, w1, bias), lambda: F.conv2d(x, w1, bias, **geo)),
    }
    return impls


def _closures(inputs, forward):
    """fwd (no grad), bwd (all gradients from a retained graph) and fwd+bwd callables of one implementation."""
    y = forward()
    grad = torch.randn_like(y)

    def fwd():
        with torch.no_grad():
            forward()

    def bwd():
        torch.autograd.grad(y, inputs, grad, retain_graph=True)

    def step():
        torch.autograd.grad(forward(), inputs, grad)

    return fwd, bwd, step


def _measure_all(impls, device, rounds, max_seconds):
    """{impl: (fwd s, bwd s, fwd+bwd s, fwd+bwd peak bytes)}.

    The implementations are timed in interleaved rounds (one sample of each per round, medians over rounds), so a
    load spike on a shared machine hits all of them alike and the ratios stay meaningful.
    """
    calls = {name: _closures(inputs, forward) for name, (inputs, forward) in impls.items()}
    for fns in calls.values():  # warm-up
        for fn in fns:
            fn()
    samples = {name: ([], [], []) for name in calls}
    end = time.perf_counter() + max_seconds
    for i in range(rounds):
        for name, fns in calls.items():
            for fn, bucket in zip(fns, samples[name]):
                bucket.append(median_time(fn, device=device, warmup=0, repeats=1))
        if i >= 2 and time.perf_counter() > end:
            break
    return {name: (*(statistics.median(b) for b in samples[name]), peak_memory_bytes(calls[name][2], device=device))
            for name in calls}


def _cpu_seconds(fn, rounds: int) -> float:
    """Median process CPU time of ``fn()`` (one thread): unlike wall time, unaffected by other processes' load."""
    fn()
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def _single_thread_table(shapes, batches, rounds: int) -> ResultTable:
    """fwd+bwd CPU time with one thread, for shared machines where wall-clock ratios are unreliable."""
    table = ResultTable(
        "cg2d_cpu_time", "Single-thread fwd+bwd CPU time (process time, float32, ms)",
        ["shape", "batch", "cg2d", "unfold", "conv", "unfold/cg2d", "cg2d/conv", "cg2d GFLOP/s", "GFLOP/s for 3x"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sgemm = _sgemm_gflops("cpu")
        for (name, channels, size, stride, dilation), batch in [(s, b) for s in shapes for b in batches]:
            impls = _problem(channels, size, stride, dilation, batch, "cpu")
            ms = {impl: _cpu_seconds(_closures(inputs, forward)[2], rounds) * 1e3
                  for impl, (inputs, forward) in impls.items()}
            flops = _step_flops(channels, size, stride, dilation, batch)
            table.add(shape=name, batch=batch, cg2d=ms["cg2d"], unfold=ms["unfold"], conv=ms["conv"],
                      **{"unfold/cg2d": ms["unfold"] / ms["cg2d"], "cg2d/conv": ms["cg2d"] / ms["conv"],
                         "cg2d GFLOP/s": flops / ms["cg2d"] / 1e6,
                         "GFLOP/s for 3x": SPEEDUP_TARGET * flops / ms["unfold"] / 1e6})
    finally:
        torch.set_num_threads(threads)
    table.notes = [
        "torch.set_num_threads(1) and time.process_time(): CPU seconds the process spent, so other processes on a "
        "loaded machine do not inflate them (cache sharing still can).",
        f"GFLOP/s: the fwd+bwd GEMM work (3 x 2 x C_out x C_in x 14 x positions) per second. 'for 3x' is the rate "
        f"cg2d would need to be 3x faster than unfold; torch.mm (MKL sgemm, 1024^3) ran at {sgemm:.0f} GFLOP/s on "
        f"one thread in this run."]
    return table


def _gpu_backend_table(shapes, batches) -> ResultTable:
    """fwd (no grad) and fwd+bwd of the CUDA C++ and the Triton kernels on the GPU, same inputs, same run."""
    def cases():
        for (name, channels, size, stride, dilation), batch in [(s, b) for s in shapes for b in batches]:
            fwd, _, step = _closures(*_problem(channels, size, stride, dilation, batch, "cuda")["cg2d"])
            yield {"shape": name, "batch": batch}, fwd, step

    return backend_comparison_table("cg2d_gpu_backends", "CG2d GPU kernels: CUDA C++ vs Triton (float32, ms)",
                                    ["shape", "batch"], cases())


def _compiled_unfold_table(shapes, batches, device) -> ResultTable:
    """cg2d against ``torch.compile`` of the unfold formulation, fwd+bwd, same inputs, same run."""
    compiled_unfold = torch.compile(unfold_cg2d, dynamic=True)

    def cases():
        for (name, channels, size, stride, dilation), batch in [(s, b) for s in shapes for b in batches]:
            impls = _problem(channels, size, stride, dilation, batch, device)
            inputs = impls["cg2d"][0]
            geo = dict(stride=stride, padding=0, dilation=dilation)
            yield ({"shape": name, "batch": batch}, _closures(*impls["cg2d"])[2],
                   _closures(inputs, lambda: compiled_unfold(*inputs[:3], None, inputs[3], **geo))[2])

    return compiled_reference_table("cg2d_vs_compiled", f"CG2d vs torch.compile(unfold reference) ({device}, "
                                    "float32)", ["shape", "batch"], cases())


def run(quick: bool, device: str) -> list[ResultTable]:
    batches = (2,) if quick else (1, 32, 128)
    shapes = [SHAPES[0], SHAPES[2]] if quick else SHAPES
    rounds, max_seconds = (3, 0.5) if quick else (9, 12.0)
    times = ResultTable(
        "cg2d_times", f"CG2d fused op vs unfold reference vs nn.Conv2d ({device}, float32, ms)",
        ["shape", "batch", "cg2d fwd", "cg2d bwd", "cg2d fwd+bwd", "unfold fwd", "unfold bwd", "unfold fwd+bwd",
         "conv fwd", "conv bwd", "conv fwd+bwd"],
        notes=["bwd: all gradients from a retained graph; fwd+bwd: one training step (forward, then gradients).",
               "cg2d is the auto backend (C++/OpenMP on CPU). unfold: unfold -> pairwise products -> matmul.",
               "conv: nn.functional.conv2d with the same kernel, stride and dilation (the yardstick)."])
    ratios = ResultTable(
        "cg2d_ratios", f"CG2d targets ({device}, float32, same run)",
        ["shape", "batch", "unfold/cg2d fwd+bwd", "cg2d GFLOP/s", "GFLOP/s for 3x", "cg2d/conv fwd",
         "cg2d/conv fwd+bwd", "FLOP yardstick", "cg2d/conv peak mem", "floor/conv peak mem", "unfold/conv peak mem",
         "meets targets"],
        notes=[f"targets: unfold/cg2d fwd+bwd >= 3; cg2d/conv fwd+bwd <= {TIME_SLACK} x {FLOP_RATIO} = "
               f"{TIME_SLACK * FLOP_RATIO:.2f} (FLOP yardstick {FLOP_RATIO}x conv); cg2d/conv peak memory <= 1.5.",
               "peak memory: bytes allocated above the starting point during one forward+backward (CPU: profiler "
               "allocation events; CUDA: allocator peak). floor: the bytes of y, dx, dW1, dW2 and dbias, which are "
               "all alive when the gradients are returned, so no implementation can peak lower; where floor/conv "
               "> 1.5 the memory target cannot be met (dW2 has 2.5x the entries of conv's whole weight gradient)."])
    ratios.notes.append(
        f"GFLOP/s: fwd+bwd GEMM work (3 x 2 x C_out x C_in x 14 x positions) per second of fwd+bwd; 'for 3x' is the "
        f"rate cg2d would need to be 3x faster than unfold. torch.mm (sgemm, 1024^3) ran at "
        f"{_sgemm_gflops(device):.0f} GFLOP/s with {torch.get_num_threads()} threads in this run.")
    progress = tqdm([(s, b) for s in shapes for b in batches], desc="cg2d bench", leave=False)
    for (name, channels, size, stride, dilation), batch in progress:
        progress.set_postfix_str(f"{name} b{batch}")
        results = _measure_all(_problem(channels, size, stride, dilation, batch, device), device, rounds, max_seconds)
        ms = {k: [t * 1e3 for t in v[:3]] for k, v in results.items()}
        times.add(**{"shape": name, "batch": batch},
                  **{f"{impl} {what}": ms[impl][i] for impl in ms for i, what in enumerate(("fwd", "bwd", "fwd+bwd"))})
        speedup = results["unfold"][2] / results["cg2d"][2]
        flops = _step_flops(channels, size, stride, dilation, batch)
        over_conv = results["cg2d"][2] / results["conv"][2]
        memory = results["cg2d"][3] / max(results["conv"][3], 1)
        ratios.add(shape=name, batch=batch, **{
            "unfold/cg2d fwd+bwd": speedup, "cg2d GFLOP/s": flops / results["cg2d"][2] / 1e9,
            "GFLOP/s for 3x": SPEEDUP_TARGET * flops / results["unfold"][2] / 1e9,
            "cg2d/conv fwd": results["cg2d"][0] / results["conv"][0],
            "cg2d/conv fwd+bwd": over_conv, "FLOP yardstick": FLOP_RATIO, "cg2d/conv peak mem": memory,
            "floor/conv peak mem": _memory_floor_bytes(channels, size, stride, dilation, batch)
            / max(results["conv"][3], 1),
            "unfold/conv peak mem": results["unfold"][3] / max(results["conv"][3], 1),
            "meets targets": "yes" if (speedup >= SPEEDUP_TARGET and over_conv <= TIME_SLACK * FLOP_RATIO
                                       and memory <= 1.5) else "no"})
    tables = [times, ratios]
    if torch.device(device).type == "cuda":
        tables.append(_gpu_backend_table(shapes, batches))
        tables.append(_compiled_unfold_table(shapes, batches, device))
    if torch.device(device).type == "cpu" and not quick:
        tables.append(_single_thread_table(shapes, batches=(1, 32), rounds=5))
    return tables


def plot(json_path: str, png_path: str) -> str:
    """Bar chart of the fwd+bwd time ratios (unfold/cg2d and cg2d/conv) per shape and batch from a results file."""
    import json
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        tables = {t["name"]: t for t in json.load(f)["tables"]}
    rows = tables["cg2d_ratios"]["rows"]
    labels = [f"{r['shape'].split(' ')[0].split('(')[0]} {r['shape'].split(' ')[1]} b{r['batch']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.8), 4.5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["unfold/cg2d fwd+bwd"] for r in rows], 0.4, label="unfold / cg2d (target >= 3)")
    ax.bar([x + 0.2 for x in xs], [r["cg2d/conv fwd+bwd"] for r in rows], 0.4, label="cg2d / conv (target <= 4.55)")
    ax.axhline(3.0, color="C0", ls="--", lw=1)
    ax.axhline(TIME_SLACK * FLOP_RATIO, color="C1", ls="--", lw=1)
    ax.axhline(FLOP_RATIO, color="gray", ls=":", lw=1, label="FLOP yardstick 3.5x conv")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("fwd+bwd time ratio (log)")
    ax.set_title("CG2d fused kernel: speed-up over unfold and cost relative to nn.Conv2d")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="plot a cg2d benchmark results file")
    parser.add_argument("json", help="results JSON written by `physkernels bench --suite cg2d --stem cg2d`")
    parser.add_argument("--out", help="PNG path (default: next to the JSON)")
    args = parser.parse_args()
    print(plot(args.json, args.out or args.json.rsplit(".", 1)[0] + ".png"))
