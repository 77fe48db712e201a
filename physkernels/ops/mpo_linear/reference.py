"""``mpo_linear``'s math in plain torch (every backend is checked against it) and argument validation. The dense
weight of Eq. 5 and the core layout checks live in :mod:`physkernels.mpo.cores` (shared with the layers, TT-SVD and
the planner)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from ...mpo.cores import mpo_shapes, reference_mpo_weight
from .._builder import OP_DTYPES


def reference_mpo_linear(x: torch.Tensor, cores: Sequence[torch.Tensor], bias: Optional[torch.Tensor] = None):
    """``x @ W^T + bias`` with the dense W of :func:`reference_mpo_weight`; x has shape ``(..., prod I)``."""
    y = torch.matmul(x, reference_mpo_weight(cores).transpose(0, 1))
    return y if bias is None else y + bias


def _environments(cores: Sequence[torch.Tensor]):
    """Left products ``L_k`` (P_I<k, P_J<k, D_{k-1}) and right products ``R_k`` (D_k, P_I>k, P_J>k) per core."""
    one = cores[0].new_ones(1, 1, 1)
    lefts, partial = [one], one
    for core in cores[:-1]:
        rows, cols, _ = partial.shape
        _, i_k, j_k, d_k = core.shape
        partial = torch.einsum("abd,dief->aibef", partial, core).reshape(rows * i_k, cols * j_k, d_k)
        lefts.append(partial)
    rights, partial = [one], one
    for core in reversed(cores[1:]):
        d_prev, i_k, j_k, _ = core.shape
        _, rows, cols = partial.shape
        partial = torch.einsum("dief,fab->diaeb", core, partial).reshape(d_prev, i_k * rows, j_k * cols)
        rights.append(partial)
    return lefts, rights[::-1]


def reference_weight_grad_to_cores(grad_w: torch.Tensor, cores: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Project ``dL/dW`` (prod J, prod I) onto every core: ``dL/dcore_k = L_k^T . dW . R_k^T`` (chain rule of Eq. 5)."""
    lefts, rights = _environments(cores)
    grads = []
    for core, left, right in zip(cores, lefts, rights):
        _, i_k, j_k, _ = core.shape
        g = grad_w.reshape(left.shape[1], j_k, right.shape[2], left.shape[0], i_k, right.shape[1])
        grads.append(torch.einsum("pqa,qjspit,bts->aijb", left, g, right))
    return grads


def validate(x, cores, bias) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Check every argument (ValueError/TypeError naming it); return ``(in_shape, out_shape, ranks)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in OP_DTYPES:
        raise TypeError(f"x must be float16, bfloat16, float32 or float64, got dtype {x.dtype}")
    in_shape, out_shape, ranks = mpo_shapes(cores)
    if x.dim() < 1 or x.shape[-1] != math.prod(in_shape):
        raise ValueError(
            f"x's last dimension must be prod(in_shape) = {math.prod(in_shape)} for in_shape {in_shape}, "
            f"got x of shape {tuple(x.shape)}"
        )
    for k, core in enumerate(cores):
        if core.dtype != x.dtype:
            raise TypeError(f"cores[{k}] has dtype {core.dtype} but x has dtype {x.dtype}; they must match")
        if core.device != x.device:
            raise ValueError(f"cores[{k}] is on {core.device} but x is on {x.device}; they must match")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.shape != (math.prod(out_shape),):
            raise ValueError(f"bias must have shape ({math.prod(out_shape)},) = (prod(out_shape),), "
                             f"got {tuple(bias.shape)}")
        if bias.dtype != x.dtype:
            raise TypeError(f"bias has dtype {bias.dtype} but x has dtype {x.dtype}; they must match")
        if bias.device != x.device:
            raise ValueError(f"bias is on {bias.device} but x is on {x.device}; they must match")
    return in_shape, out_shape, ranks
