"""``mpo_linear`` on a GPU: the planned contraction with cuBLAS GEMMs, or the fused chain kernels of
``physkernels._C_cuda.mpo`` (one block per batch tile, states in shared memory when they fit)."""

from __future__ import annotations

import math

import torch

from ... import _extensions
from ..._kernel_args import Out, device_constant, launch, typed_kernel
from ...mpo import contract
from .plans import ChainKernels, fused_chain, planned_backward, planned_forward

def _chain_buffers(x, merged):
    """Flattened step matrices, the int64 step table, tile, state sizes of the fused chain."""
    mats, steps, tile = fused_chain(merged, x.shape[0], x.element_size())
    offsets = [0]
    for a in mats[:-1]:
        offsets.append(offsets[-1] + a.numel())
    flat = torch.cat([a.reshape(-1) for a in mats])
    rows = tuple((*st, off) for st, off in zip(steps, offsets))
    table = device_constant(("mpo_steps", rows), x.device, lambda: torch.tensor(rows, dtype=torch.int64))
    sizes = [c * k * r for c, _, k, r in steps] + [x.shape[1], steps[-1][0] * steps[-1][1] * steps[-1][3]]
    return mats, flat, table, steps, tile, max(sizes) * tile


def _merged_forward(x, merged):
    mats, flat, table, steps, tile, half = _chain_buffers(x, merged)
    y = x.new_empty(x.shape[0], math.prod(c.shape[2] for c in merged))
    n_tiles = -(-x.shape[0] // tile)
    use_shared = 2 * half * x.element_size() <= 48 * 1024
    scratch = x.new_empty(0 if use_shared else n_tiles * 2 * half)
    kernel = typed_kernel(_extensions.cuda().mpo, "forward", x.dtype)
    launch(kernel, x, Out(y), flat, table, len(steps), x.shape[0], x.shape[1], y.shape[1], half, tile, Out(scratch),
           use_shared, torch.cuda.current_stream(x.device).cuda_stream, dtype=x.dtype)
    return y


def _merged_backward(grad, x, merged, need_x=True):
    """``(dx, d merged)``; the CUDA kernel always forms dx (returned as None without ``need_x``)."""
    mats, flat, table, steps, tile, half = _chain_buffers(x, merged)
    n_tiles = -(-x.shape[0] // tile)
    state_total = sum(c * k * r for c, _, k, r in steps) * tile
    mat_total = flat.numel()
    scratch = x.new_empty(n_tiles * (state_total + 2 * half))
    partials = x.new_empty(n_tiles * mat_total)
    grad_x, grad_flat = x.new_empty(x.shape), flat.new_empty(flat.shape)
    kernel = typed_kernel(_extensions.cuda().mpo, "backward", x.dtype)
    launch(kernel, grad, x, Out(grad_x), flat, Out(grad_flat), table, len(steps), x.shape[0], x.shape[1],
           grad.shape[1], half, state_total, mat_total, tile, Out(scratch), Out(partials),
           torch.cuda.current_stream(x.device).cuda_stream, dtype=x.dtype)
    grads = torch.split(grad_flat, [a.numel() for a in mats])
    return grad_x if need_x else None, [contract.matrix_grad_to_core(g.view(a.shape), c.shape, "ltr")
                                        for g, a, c in zip(grads, mats, merged)]


fused_forward = contract.forward_on_merged_cores(_merged_forward)
fused_backward = contract.backward_on_merged_cores(_merged_backward)
CHAIN = ChainKernels("cuda", ("gemm", "fused"), fused_forward, fused_backward)


def forward(x, cores, bias):
    return planned_forward(x, cores, bias, CHAIN)


def forward_keep(x, cores, bias):
    return planned_forward(x, cores, bias, CHAIN, keep_states=True)


def backward(grad, needs, x, cores, bias, kept=None):
    return planned_backward(grad, needs, x, cores, bias, CHAIN, kept)
