"""The planned contraction every compiled MPO backend runs: the plan for a call (chosen by measurement on its first
call, then memoised), the forward and backward that execute it (:mod:`physkernels.mpo.contract`, with a backend's
fused chain kernel for ``fused`` plans), and the layout of a fused chain (step matrices, batch tile, threads).

**Choosing the plan.** The first call of a problem (core shapes, batch, dtype, device, objective, backend, CPU
threads) times the candidates the cost model ranks best (:func:`physkernels.mpo.planner.enumerate_plans`: the
``TUNED_CANDIDATES`` cheapest predicted, the cheapest of each kind — dense, gemm chain, fused chain — and none
predicted over ``TUNED_SPREAD`` times the cheapest) on the call's own tensors, and keeps the fastest: the pick is
measured on the machine that runs it, as cuDNN's benchmark mode and Triton's autotuner do. Later calls of the same
problem reuse it. Timings vary, so two processes may pick differently, and their results then differ in rounding;
the cost model alone decides (the same pick every run) when measuring is off (:func:`set_autotune`, or the
environment variable ``PHYSKERNELS_MPO_AUTOTUNE=0``), under ``torch.use_deterministic_algorithms(True)`` (as
``torch.backends.cudnn.benchmark`` yields to it), and while a CUDA graph is being captured (nothing can be timed
then).

A backend describes what it runs plans with as a :class:`ChainKernels`: the kernel kinds the planner may choose
(``gemm``, ``fused``) and its fused kernels, ``fused_forward(x, cores, groups) -> (y, kept)`` and
``fused_backward(grad, x, cores, groups, kept, need_x) -> (dx, [d core])``.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import torch

from ...mpo import contract, planner
from ...mpo.cores import mpo_shapes

TUNED_CANDIDATES = 4
TUNED_SPREAD = 4.0
_TUNE_SECONDS = 0.02  # time one candidate for about this long (three runs at least, after a warm-up)
_autotune = os.environ.get("PHYSKERNELS_MPO_AUTOTUNE", "1") != "0"
_plan_memo: dict = {}


@dataclass(frozen=True)
class ChainKernels:
    """What a backend runs plans with: its name, the kernel kinds the planner may choose and its fused kernels."""

    backend: str
    kinds: tuple[str, ...]
    fused_forward: Optional[contract.FusedForward] = None
    fused_backward: Optional[contract.FusedBackward] = None


def set_autotune(enabled: bool) -> None:
    """Choose MPO plans by timing candidates on their first call (default; faster) or by the cost model alone (the
    same pick in every run: bitwise-reproducible results); forgets the plans chosen so far."""
    global _autotune
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _autotune = enabled
    _plan_memo.clear()


def autotune_enabled() -> bool:
    return _autotune


def plan_for(x: torch.Tensor, cores, objective: str, chain: ChainKernels) -> planner.Plan:
    """The plan that runs this call (memoised on the raw shapes: this runs on every call)."""
    measure = _autotune and not torch.are_deterministic_algorithms_enabled()
    key = (tuple(c.shape for c in cores), x.shape[0], x.dtype, x.device, objective, chain.backend, chain.kinds,
           torch.get_num_threads(), measure)
    found = _plan_memo.get(key)
    if found is None:
        capturing = x.is_cuda and torch.cuda.is_current_stream_capturing()
        in_shape, out_shape, ranks = mpo_shapes(cores)
        if measure and not capturing:
            found = _measured_plan(x, cores, objective, chain, in_shape, out_shape, ranks)
        else:
            found = planner.plan(in_shape, out_shape, ranks, x.shape[0], x.dtype, x.device, kernels=chain.kinds,
                                 objective=objective)
        if not capturing:
            if len(_plan_memo) > 4096:
                _plan_memo.clear()
            _plan_memo[key] = found
    return found


def tuning_candidates(plans: list, objective: str) -> list:
    """The plans worth timing: the ``TUNED_CANDIDATES`` cheapest predicted and the cheapest of each kind (dense,
    gemm chain, fused chain), leaving out those predicted over ``TUNED_SPREAD`` times the cheapest."""
    ranked = sorted(plans, key=lambda p: planner.objective_seconds(p, objective))
    best = planner.objective_seconds(ranked[0], objective)
    chosen = ranked[:TUNED_CANDIDATES]
    for kind in ("dense", "gemm", "fused"):
        first = next((p for p in ranked if ("dense" if p.dense else p.kernel) == kind), None)
        if first is not None and first not in chosen:
            chosen.append(first)
    return [p for p in chosen if planner.objective_seconds(p, objective) <= TUNED_SPREAD * best]


def _run(p: planner.Plan, objective: str, x, cores, grad, chain: ChainKernels) -> None:
    """One pass of ``objective`` by plan ``p`` (results discarded)."""
    if objective == "forward":
        contract.run_forward(p, x, cores, fused=chain.fused_forward)
    elif objective == "training":
        _, states = contract.run_forward(p, x, cores, fused=chain.fused_forward, keep_states=True)
        contract.run_backward(p, grad, x, cores, fused=chain.fused_backward, states=states)
    else:
        contract.run_backward(p, grad, x, cores, fused=chain.fused_backward)


def _seconds(fn, device: torch.device) -> float:
    """Fastest of a few timed runs of ``fn`` after a warm-up (one timed run when a run takes the whole budget)."""
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()  # warm-up: first-call costs (compilation, allocation) are not measured
    best = spent = timed()
    runs = 1
    while runs < 10 and (runs < 3 or spent < _TUNE_SECONDS) and best < _TUNE_SECONDS:
        t = timed()
        best, spent, runs = min(best, t), spent + t, runs + 1
    return best


def _measured_plan(x, cores, objective, chain, in_shape, out_shape, ranks) -> planner.Plan:
    plans = planner.enumerate_plans(in_shape, out_shape, ranks, x.shape[0], x.dtype, x.device, chain.kinds)
    candidates = tuning_candidates(plans, objective)
    if len(candidates) == 1:
        return candidates[0]
    grad = x.new_ones(x.shape[0], math.prod(out_shape))
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    with torch.no_grad():
        times = [_seconds(lambda: _run(p, objective, x, cores, grad, chain), x.device) for p in candidates]
    return candidates[times.index(min(times))]


def planned_forward(x, cores, bias, chain: ChainKernels, keep_states=False):
    """``x @ W^T + bias`` by the plan (contiguous operands); with ``keep_states`` also ``(plan, states)`` for
    :func:`planned_backward`."""
    x, cores = x.contiguous(), [c.contiguous() for c in cores]
    p = plan_for(x, cores, "training" if keep_states else "forward", chain)
    out = contract.run_forward(p, x, cores, fused=chain.fused_forward, keep_states=keep_states)
    y, kept = (out[0], (p, out[1])) if keep_states else (out, None)
    if bias is not None:
        y = y.add_(bias)
    return (y, kept) if keep_states else y


def planned_backward(grad, needs, x, cores, bias, chain: ChainKernels, kept=None):
    """``(dx, [d core], dbias)`` by the forward's plan and kept states, or (custom op) by its own plan,
    recomputing; dx is None when ``needs[0]`` is False."""
    grad, x, cores = grad.contiguous(), x.contiguous(), [c.contiguous() for c in cores]
    p, states = kept if kept is not None else (plan_for(x, cores, "backward", chain), None)
    grads = contract.run_backward(p, grad, x, cores, fused=chain.fused_backward, states=states, need_x=needs[0])
    return grads[0], list(grads[1:]), grad.sum(0) if bias is not None else None


@functools.lru_cache(maxsize=1024)
def fused_layout(shapes: tuple, batch: int, itemsize: int, on_gpu: bool) -> tuple[list, int]:
    """``(count, m, k, rest)`` per step of the fused ltr chain over merged cores of ``shapes``, and its batch tile."""
    steps = [(s.count, s.m, s.k, s.n) for s in planner.chain_steps(shapes, "ltr", 1)]
    budget = planner.GPU_TILE_BYTES if on_gpu else planner.CPU_TILE_BYTES
    return steps, planner.fused_tile(shapes, batch, itemsize, cache_bytes=budget, largest=32 if on_gpu else 16)


def fused_chain(merged, batch: int, itemsize: int):
    """Step matrices, ``(count, m, k, rest)`` per step and the batch tile of the fused ltr chain over ``merged``."""
    steps, tile = fused_layout(tuple(tuple(c.shape) for c in merged), batch, itemsize, merged[0].is_cuda)
    return [contract.step_matrix(c, "ltr").contiguous() for c in merged], steps, tile


def fused_threads(steps, batch: int, tile: int) -> int:
    """Threads for one fused CPU call: at most one per batch tile (the kernel's unit of parallel work); one below
    2^17 multiply-adds, where an OpenMP fork/join (and, on a busy machine, waiting for a second core) costs more
    than the work. Results do not depend on it (the kernel's tiles and reductions are fixed by the shapes)."""
    macs = batch * sum(count * m * k * rest for count, m, k, rest in steps)
    return 1 if macs < 2**17 else max(1, min(torch.get_num_threads(), -(-batch // tile)))
