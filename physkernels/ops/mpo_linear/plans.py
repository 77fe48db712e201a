"""The planned contraction every compiled MPO backend runs: the planner's choice for a call (memoised), the forward
and backward that execute it (:mod:`physkernels.mpo.contract`, with a backend's fused chain kernel for ``fused``
plans), and the layout of a fused chain (step matrices, batch tile, threads).

A backend's fused kernels enter as ``fused_forward(x, cores, groups) -> (y, kept)`` and
``fused_backward(grad, x, cores, groups, kept, need_x) -> (dx, [d core])``.
"""

from __future__ import annotations

import functools

import torch

from ...mpo import contract, planner
from ...mpo.cores import mpo_shapes


_plan_memo: dict = {}


def plan_for(x: torch.Tensor, cores, objective: str, kernels: tuple[str, ...]) -> planner.Plan:
    """The planner's choice for this call (memoised on the raw shapes: this runs on every call)."""
    key = (tuple(c.shape for c in cores), x.shape[0], x.dtype, x.device, objective, kernels, torch.get_num_threads())
    found = _plan_memo.get(key)
    if found is None:
        if len(_plan_memo) > 4096:
            _plan_memo.clear()
        in_shape, out_shape, ranks = mpo_shapes(cores)
        found = _plan_memo[key] = planner.plan(in_shape, out_shape, ranks, x.shape[0], x.dtype, x.device,
                                               kernels=kernels, objective=objective)
    return found


def planned_forward(x, cores, bias, kernels, fused, keep_states=False):
    """``x @ W^T + bias`` by the plan (contiguous operands); with ``keep_states`` also ``(plan, states)`` for
    :func:`planned_backward`."""
    x, cores = x.contiguous(), [c.contiguous() for c in cores]
    p = plan_for(x, cores, "training" if keep_states else "forward", kernels)
    out = contract.run_forward(p, x, cores, fused=fused, keep_states=keep_states)
    y, kept = (out[0], (p, out[1])) if keep_states else (out, None)
    if bias is not None:
        y = y.add_(bias)
    return (y, kept) if keep_states else y


def planned_backward(grad, needs, x, cores, bias, kernels, fused, kept=None):
    """``(dx, [d core], dbias)`` by the forward's plan and kept states, or (custom op) by its own plan,
    recomputing; dx is None when ``needs[0]`` is False."""
    grad, x, cores = grad.contiguous(), x.contiguous(), [c.contiguous() for c in cores]
    p, states = kept if kept is not None else (plan_for(x, cores, "backward", kernels), None)
    grads = contract.run_backward(p, grad, x, cores, fused=fused, states=states, need_x=needs[0])
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
