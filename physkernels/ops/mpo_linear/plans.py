"""The planned contraction every compiled MPO backend runs: the plan for a call, the forward and backward that
execute it (:mod:`physkernels.mpo.contract`, with a backend's fused chain kernel for ``fused`` plans), and the
layout of a fused chain (step matrices, batch tile, threads).

**Choosing the plan** (:mod:`physkernels._autotune`). The first call of a problem (core shapes, batch, dtype,
device, objective, backend, CPU threads) times the candidates the cost model ranks best
(:func:`physkernels.mpo.planner.enumerate_plans`: the ``TUNED_CANDIDATES`` cheapest predicted and the cheapest of
each kind — dense, gemm chain, fused chain — none predicted over ``TUNED_SPREAD`` times the cheapest) on the
call's own tensors and keeps the fastest; later calls reuse it. Where nothing is measured (autotuning off,
deterministic algorithms requested, CUDA-graph capture) the cost model's pick runs: the same in every run.

A backend describes what it runs plans with as a :class:`ChainKernels`: the kernel kinds the planner may choose
(``gemm``, ``fused``) and its fused kernels, ``fused_forward(x, cores, groups) -> (y, kept)`` and
``fused_backward(grad, x, cores, groups, kept, need_x) -> (dx, [d core])``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch

from ... import _autotune
from ...mpo import contract, planner
from ...mpo.cores import mpo_shapes

TUNED_CANDIDATES = 4
TUNED_SPREAD = 4.0


@dataclass(frozen=True)
class ChainKernels:
    """What a backend runs plans with: its name, the kernel kinds the planner may choose and its fused kernels."""

    backend: str
    kinds: tuple[str, ...]
    fused_forward: Optional[contract.FusedForward] = None
    fused_backward: Optional[contract.FusedBackward] = None


def plan_for(x: torch.Tensor, cores, objective: str, chain: ChainKernels) -> planner.Plan:
    """The plan that runs this call (memoised on the raw shapes: this runs on every call)."""
    key = ("mpo_plan", tuple(c.shape for c in cores), x.shape[0], x.dtype, x.device, objective, chain.backend,
           chain.kinds, torch.get_num_threads())
    found = _autotune.remembered(key)
    if found is not None:
        return found

    def shapes():
        return mpo_shapes(cores)

    def cost_model_pick():
        return planner.plan(*shapes(), x.shape[0], x.dtype, x.device, kernels=chain.kinds, objective=objective)

    def candidates():
        plans = planner.enumerate_plans(*shapes(), x.shape[0], x.dtype, x.device, chain.kinds)
        return tuning_candidates(plans, objective)

    grad = []  # the cotangent the candidates' backward passes use, made once

    def run(p):
        if not grad:
            grad.append(x.new_ones(x.shape[0], math.prod(shapes()[1])))
        _run(p, objective, x, cores, grad[0], chain)

    return _autotune.choose(key, x.device, cost_model_pick, candidates, run)


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
