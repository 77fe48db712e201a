"""Check the MPO planner against measurement: time the cheapest predicted candidate plans of every benchmark shape.

For each (shape, D, batch) of the ``mpo`` suite this times forward+backward (the custom op's recomputing backward)
of the planner's top candidates and reports the planner's pick, the fastest measured candidate and dense
nn.Linear. Times are CPU time of one thread (``time.process_time``), which stays meaningful on a shared machine;
the cost model's CPU constants were fitted to this table. Writes ``bench/results/mpo_plans.{json,md}``.

    python bench/mpo_plans.py [--batches 1,32,256,4096] [--top 8]
    python bench/mpo_plans.py --autotuned [--device cuda] [--batches 1,32,256] [--top 12]   # the measured pick
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch
from tqdm import tqdm

import physkernels
from physkernels import _autotune
from physkernels.benchmarks.harness import ResultTable, write_results
from physkernels.benchmarks.mpo import SHAPES, random_cores
from physkernels.mpo import contract, planner

from physkernels.ops.mpo_linear import cpp_backend, plans


def cpu_time(fn, repeats: int = 3, budget: float = 1.5) -> float:
    """Minimum CPU seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    samples, end = [], time.process_time() + budget
    for _ in range(repeats):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
        if time.process_time() > end:
            break
    return min(samples)


def autotuned_table(batches, top: int, device: str = "cpu") -> ResultTable:
    """The measured pick (what the op runs: physkernels._autotune over the cost model's short list) against the
    fastest of the cost model's ``top`` candidates plus the best dense plan, each timed again here (eager training:
    forward keeping the states, then the backward; wall time, fastest of a few runs, torch's thread count)."""
    if device == "cuda":
        from physkernels.ops.mpo_linear import cuda_backend
        chain, where = cuda_backend.CHAIN, torch.cuda.get_device_name()
    else:
        chain, where = cpp_backend.chain(), f"{torch.get_num_threads()} CPU threads"
    table = ResultTable("mpo_autotune", f"MPO measured pick vs the fastest candidate (wall time, {where}, "
                        "eager fwd+bwd)",
                        ["shape", "D", "batch", "measured pick", "pick ms", "cost-model pick", "cost-model ms",
                         "fastest candidate", "fastest ms", "pick/fastest", "cost-model/fastest"])
    physkernels.set_autotune(True)
    cases = [(s, b) for s in SHAPES for b in batches]
    for (in_shape, out_shape, bond), batch in tqdm(cases, desc="autotune"):
        cores = [c.detach() for c in random_cores(in_shape, out_shape, bond, device=device)]
        x = torch.randn(batch, math.prod(in_shape)).to(device)
        grad = torch.randn(batch, math.prod(out_shape)).to(device)
        ranks = (bond,) * (len(in_shape) - 1)
        pick = plans.plan_for(x, cores, "training", chain)
        model_pick = planner.plan(in_shape, out_shape, ranks, batch, device=device, kernels=chain.kinds,
                                  objective="training")
        every = planner.enumerate_plans(in_shape, out_shape, ranks, batch, device=device, kernels=chain.kinds)
        every.sort(key=lambda p: planner.objective_seconds(p, "training"))
        pool = every[:top] + [p for p in every if p.dense][:1]
        pool += [p for p in (pick, model_pick) if p not in pool]

        def seconds(p):
            return _autotune.seconds(lambda: plans._run(p, "training", x, cores, grad, chain), x.device)

        times = {p: seconds(p) for p in pool}
        fastest = min(pool, key=times.get)
        table.add(**{"shape": f"{in_shape}->{out_shape}", "D": bond, "batch": batch,
                     "measured pick": pick.strategy, "pick ms": times[pick] * 1e3,
                     "cost-model pick": model_pick.strategy, "cost-model ms": times[model_pick] * 1e3,
                     "fastest candidate": fastest.strategy, "fastest ms": times[fastest] * 1e3,
                     "pick/fastest": times[pick] / times[fastest],
                     "cost-model/fastest": times[model_pick] / times[fastest]})
    table.notes.append(f"candidates: the cost model's top {top} by predicted fwd+bwd, the best dense plan, and both "
                       "picks; every time is a fresh measurement (fastest of >= 3 runs after a warm-up)")
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,32,256,4096")
    parser.add_argument("--top", type=int, default=8, help="candidates measured per case")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--autotuned", action="store_true",
                        help="check the measured pick instead (torch's threads) -> mpo_autotune[_cuda].{json,md}")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="with --autotuned")
    args = parser.parse_args(argv)
    if args.autotuned:
        table = autotuned_table([int(v) for v in args.batches.split(",")], args.top, args.device)
        print(table.markdown())
        write_results([table], args.out, "mpo_autotune" + ("_cuda" if args.device == "cuda" else ""))
        return 0
    torch.set_num_threads(1)
    kernels = planner.default_kernels("cpu")
    table = ResultTable("mpo_plans", "MPO planner pick vs measured candidates (CPU time, 1 thread, fwd+bwd)",
                        ["shape", "D", "batch", "planner pick", "pick ms", "predicted ms", "fastest measured",
                         "fastest ms", "pick/fastest", "dense nn.Linear ms"])
    cases = [(s, b) for s in SHAPES for b in (int(v) for v in args.batches.split(","))]
    for (in_shape, out_shape, bond), batch in tqdm(cases, desc="plans"):
        cores = [c.detach() for c in random_cores(in_shape, out_shape, bond)]
        x = torch.randn(batch, math.prod(in_shape))
        grad = torch.randn(batch, math.prod(out_shape))
        linear = torch.nn.Linear(x.shape[1], grad.shape[1])
        x_leaf = x.clone().requires_grad_(True)
        t_dense = cpu_time(lambda: linear(x_leaf).backward(grad))
        plans = planner.enumerate_plans(in_shape, out_shape, (bond,) * (len(in_shape) - 1), batch,
                                        kernels=kernels, threads=1)
        plans.sort(key=lambda p: p.forward.seconds + p.backward.seconds + p.recompute.seconds)
        measured = []
        for p in plans[:args.top]:
            t = cpu_time(lambda: (contract.run_forward(p, x, cores, cpp_backend.fused_forward),
                                  contract.run_backward(p, grad, x, cores, cpp_backend.fused_backward)))
            measured.append((t, p))
        fastest = min(measured, key=lambda m: m[0])
        pick_t, pick = measured[0]
        table.add(**{"shape": f"{in_shape}->{out_shape}", "D": bond, "batch": batch, "planner pick": pick.strategy,
                     "pick ms": pick_t * 1e3,
                     "predicted ms": (pick.forward.seconds + pick.backward.seconds + pick.recompute.seconds) * 1e3,
                     "fastest measured": fastest[1].strategy, "fastest ms": fastest[0] * 1e3,
                     "pick/fastest": pick_t / fastest[0], "dense nn.Linear ms": t_dense * 1e3})
    table.notes.append("candidates: the planner's top-N by predicted cost; pick/fastest = 1 when the pick was best")
    print(table.markdown())
    write_results([table], args.out, "mpo_plans")
    return 0


if __name__ == "__main__":
    sys.exit(main())
