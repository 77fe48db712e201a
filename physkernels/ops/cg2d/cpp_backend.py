"""CG2d on the CPU: the fused C++/OpenMP kernels of ``physkernels._C.cg2d`` (orders 2 and 3; features formed per
tile of output positions in a small per-thread buffer, never as an im2col or pairwise-product tensor)."""

from __future__ import annotations

import torch

from ... import _extensions
from ..._kernel_args import Out, Strided, launch, typed_kernel
from .reference import kernel_geometry, out_shape


def _order(weight3) -> int:
    return 3 if weight3 is not None else 2


def forward(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    y = x.new_empty(out_shape(x, weight, stride, padding, dilation))
    geometry = kernel_geometry(x, weight, stride, padding, dilation, groups, _order(weight3))
    launch(typed_kernel(_extensions.cpu().cg2d, "forward", x.dtype), Strided(x), weight, weight2,
           weight3, bias, Out(y), *geometry, torch.get_num_threads(), dtype=x.dtype)
    return y


def backward(grad, needs, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, kept=None):
    dx = x.new_empty(x.shape) if needs[0] else None
    dw1, dw2 = weight.new_empty(weight.shape), weight2.new_empty(weight2.shape)
    dw3 = weight3.new_empty(weight3.shape) if weight3 is not None else None
    dbias = x.new_empty(weight.shape[0]) if bias is not None else None
    geometry = kernel_geometry(x, weight, stride, padding, dilation, groups, _order(weight3))
    launch(typed_kernel(_extensions.cpu().cg2d, "backward", x.dtype), grad, Strided(x), weight, weight2,
           weight3, Out(dx), Out(dw1), Out(dw2), Out(dw3), Out(dbias), *geometry, torch.get_num_threads(),
           dtype=x.dtype)
    return dx, dw1, dw2, dw3, dbias, None, None, None, None
