"""CG2d on a GPU: the CUDA kernels of ``physkernels._C_cuda.cg2d`` (order 2, kernels of at most ``max_patch``
positions; a deterministic two-pass weight gradient over slabs of output positions)."""

from __future__ import annotations

import torch

from ... import _extensions
from ..._kernel_args import Out, Strided, launch, typed_kernel
from .reference import kernel_geometry, out_shape


def supports(x, weight, weight2, weight3, bias, stride, padding, dilation, groups) -> str | None:
    if weight3 is not None:
        return "the cuda kernels implement order 2 only (weight3 was given)"
    patch, limit = weight.shape[2] * weight.shape[3], _extensions.cuda().cg2d.max_patch
    if patch > limit:
        return f"the cuda kernels take kernels of at most {limit} positions, got {patch}"
    return None


def _geometry(x, weight, stride, padding, dilation, groups):
    return kernel_geometry(x, weight, stride, padding, dilation, groups, 2)[:-1]  # no order argument


def forward(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    y = x.new_empty(out_shape(x, weight, stride, padding, dilation))
    launch(typed_kernel(_extensions.cuda().cg2d, "forward", x.dtype), Strided(x), weight, weight2, bias,
           Out(y), *_geometry(x, weight, stride, padding, dilation, groups),
           torch.cuda.current_stream(x.device).cuda_stream, dtype=x.dtype)
    return y


def backward(grad, needs, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, kept=None):
    module = _extensions.cuda().cg2d
    dx = x.new_empty(x.shape) if needs[0] else None
    dw1, dw2 = weight.new_empty(weight.shape), weight2.new_empty(weight2.shape)
    dbias = x.new_empty(weight.shape[0]) if bias is not None else None
    geometry = _geometry(x, weight, stride, padding, dilation, groups)
    spatial = geometry[:4] + geometry[8:]  # without the strides
    features = weight.shape[2] * weight.shape[3] + weight2.shape[2]
    slabs = module.weight_grad_slabs(*spatial)
    partial = x.new_empty(slabs, weight.shape[0], weight.shape[1] * features)  # per-slab weight-gradient partials
    launch(typed_kernel(module, "backward", x.dtype), grad, Strided(x), weight, weight2, Out(dx), Out(dw1),
           Out(dw2), Out(dbias), Out(partial), *geometry, torch.cuda.current_stream(x.device).cuda_stream,
           dtype=x.dtype)
    return dx, dw1, dw2, None, dbias, None, None, None, None
