"""``taylor_linear`` on the CPU: the fused C++/OpenMP kernels of ``physkernels._C.taylor`` (features built tile by
tile from the prefix-row table, compensated sums)."""

from __future__ import annotations

import torch

from ... import _extensions
from ..._kernel_args import Out, launch, typed_kernel
from .reference import index_table


def _kernels(dtype: torch.dtype):
    module = _extensions.cpu().taylor
    return tuple(typed_kernel(module, name, dtype) for name in ("forward", "backward_input", "backward_weight"))


def forward(x, weight, bias, order):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows = index_table("rows", n, order, x.device)
    y = x.new_empty(batch, out)
    launch(_kernels(x.dtype)[0], x, weight, bias, rows, rows.shape[0], rows.shape[1], Out(y), batch, n, out,
           terms, torch.get_num_threads(), dtype=x.dtype)
    return y


def backward(grad, needs, x, weight, bias, order, kept=None):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows = index_table("rows", n, order, x.device)
    _, backward_input, backward_weight = _kernels(x.dtype)
    threads = torch.get_num_threads()
    dx, dweight, dbias = x.new_zeros(batch, n), weight.new_zeros(out, terms), grad.new_empty(out)
    if needs[0]:
        launch(backward_input, grad, x, weight, rows, rows.shape[0], rows.shape[1], Out(dx), batch, n, out, terms,
               threads, dtype=x.dtype)
    launch(backward_weight, grad, x, rows, rows.shape[0], rows.shape[1], Out(dweight if needs[1] else None),
           Out(dbias), batch, n, out, terms if needs[1] else 0, threads, dtype=x.dtype)
    return dx, dweight, dbias, None
