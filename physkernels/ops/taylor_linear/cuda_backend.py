"""``taylor_linear`` on a GPU: the CUDA kernels of ``physkernels._C_cuda.taylor`` (the float64 GPU path)."""

from __future__ import annotations

import torch

from ... import _extensions
from ..._kernel_args import Out, launch, typed_kernel
from .reference import index_table


def _kernels(x: torch.Tensor):
    module = _extensions.cuda().taylor
    kernels = (typed_kernel(module, name, x.dtype) for name in ("forward", "backward_input", "backward_weight"))
    return (*kernels, torch.cuda.current_stream(x.device).cuda_stream)


def forward(x, weight, bias, order):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows = index_table("rows", n, order, x.device)
    kernel, _, _, stream = _kernels(x)
    y = x.new_empty(batch, out)
    launch(kernel, x, weight, bias, rows, rows.shape[0], rows.shape[1], Out(y), batch, n, out, terms, stream,
           dtype=x.dtype)
    return y


def backward(grad, needs, x, weight, bias, order, kept=None):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows, term_rows = index_table("rows", n, order, x.device), index_table("term_rows", n, order, x.device)
    _, backward_input, backward_weight, stream = _kernels(x)
    dx, dweight = x.new_zeros(batch, n), weight.new_zeros(out, terms)
    if needs[0]:
        compensation = x.new_zeros(batch, n)  # scratch of the compensated dx sums
        launch(backward_input, grad, x, weight, rows, rows.shape[0], rows.shape[1], Out(dx), Out(compensation),
               batch, n, out, terms, stream, dtype=x.dtype)
    if needs[1]:
        launch(backward_weight, grad, x, rows, rows.shape[1], term_rows, Out(dweight), batch, n, out, terms, stream,
               dtype=x.dtype)
    return dx, dweight, grad.sum(0), None
