"""``mpo_linear`` on the CPU: the planned contraction with torch GEMMs, or the fused chain kernel of
``physkernels._C.mpo`` (one pass over batch tiles that stay in cache) where the planner predicts it faster."""

from __future__ import annotations

import functools
import math

import torch

from ... import _extensions
from ..._kernel_args import Out, launch, typed_kernel
from ...mpo import planner
from .plans import ChainKernels, fused_layout, fused_threads, planned_backward, planned_forward


@functools.cache
def chain() -> ChainKernels:
    """The gemm chains, and the fused chain kernel where ``_C`` has it."""
    module = _extensions.load("_C")
    if module is None or not hasattr(module, "mpo"):
        return ChainKernels("cpp", ("gemm",))
    return ChainKernels("cpp", ("gemm", "fused"), fused_forward, fused_backward)


def forward(x, cores, bias):
    return planned_forward(x, cores, bias, chain())


def forward_keep(x, cores, bias):
    return planned_forward(x, cores, bias, chain(), keep_states=True)


def backward(grad, needs, x, cores, bias, kept=None):
    return planned_backward(grad, needs, x, cores, bias, chain(), kept)


@functools.lru_cache(maxsize=1024)
def _fused_config(core_shapes: tuple, groups: tuple, batch: int, itemsize: int, threads: int) -> tuple[int, int]:
    """``(batch tile, threads)`` of a fused call (``threads``: torch's count, part of the cache key)."""
    merged = planner.merged_shapes([s[1] for s in core_shapes], [s[2] for s in core_shapes],
                                   [s[3] for s in core_shapes[:-1]], groups)
    steps, tile = fused_layout(tuple(merged), batch, itemsize, False)
    return tile, fused_threads(steps, batch, tile)


def _fused_call(x, cores, groups):
    """The arguments every fused call shares: shapes, groups, tile, threads."""
    shapes = tuple(tuple(c.shape) for c in cores)
    groups = tuple(groups)
    tile, threads = _fused_config(shapes, groups, x.shape[0], x.element_size(), torch.get_num_threads())
    return shapes, groups, tile, threads


def fused_forward(x, cores, groups):
    """``(y, [])``: the ltr chain over ``groups`` of ``cores`` (merged inside the kernel call; nothing is kept for
    the backward, which merges again and recomputes the chain in cache)."""
    shapes, groups, tile, threads = _fused_call(x, cores, groups)
    y = x.new_empty(x.shape[0], math.prod(s[2] for s in shapes))
    launch(typed_kernel(_extensions.cpu().mpo, "forward", x.dtype), x, x.shape[0], list(cores), shapes, groups, Out(y),
           tile, threads, dtype=x.dtype)
    return y, []


def fused_backward(grad, x, cores, groups, kept=None, need_x=True):
    """``(dx, [d core])`` (``kept``: unused, the forward keeps nothing); without ``need_x`` dx is None and the
    chain's first dIn is skipped."""
    shapes, groups, tile, threads = _fused_call(x, cores, groups)
    grad_x = x.new_empty(x.shape) if need_x else None
    grad_cores = [c.new_empty(c.shape) for c in cores]
    launch(typed_kernel(_extensions.cpu().mpo, "backward", x.dtype), grad, x, x.shape[0], list(cores), shapes, groups,
           Out(grad_x), [Out(g) for g in grad_cores], tile, threads, dtype=x.dtype)
    return grad_x, grad_cores
