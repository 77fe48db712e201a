"""``taylor_linear``: the direct Taylor-expansion layer of the TaylorNet paper (Eq. 2-3).

    y[b, a] = bias[a] + sum_t W[a, t] * F[b, t],    F[b, t] = x[b, i1] * ... * x[b, id]

over all monomials t = (i1 <= ... <= id) of degree d = 1..order (``physkernels.taylor.monomials`` order).
Shapes: x (..., n), weight (O, T) with T = C(n + order, order) - 1, bias (O) or None, y (..., O).

Modules: ``reference`` (materialises F (B, T) from the explicit monomial index list and multiplies; validation),
``cpp_backend``, ``triton_backend`` and ``cuda_backend`` (fused: they build features tile by tile, a lower-degree
prefix monomial times one x, and contract each tile at once, so no (B, T) tensor exists). The op is assembled by
:class:`physkernels.ops._builder.KernelOp`.
"""

from __future__ import annotations

import torch

from .._builder import KernelOp
from .reference import reference_features, reference_taylor_linear, validate

__all__ = ["taylor_linear", "reference_taylor_linear", "reference_features"]

_PACKAGE = __name__

# On a GPU the Triton kernels beat the CUDA C++ ones in float32 (bench/results/full_cuda_taylor.md), so auto tries
# Triton first there; float64 runs the CUDA kernels.
op = KernelOp(
    "taylor_linear", "(Tensor x, Tensor weight, Tensor? bias, int order) -> Tensor",
    title="TaylorLinear", reference=reference_taylor_linear,
    fake=lambda x, weight, bias, order: x.new_empty(x.shape[0], weight.shape[0]),
    backends={name: f"{_PACKAGE}.{name}_backend" for name in ("cpp", "triton", "cuda")},
    auto_order={"cpu": ("cpp", "reference"), "cuda": ("triton", "cuda", "reference"),
                "cuda:float64": ("cuda", "triton", "reference")})


def taylor_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, order: int) -> torch.Tensor:
    """y = bias + weight @ monomials(x) over all monomials of degree 1..order (fused; see module docstring).

    x (..., n); weight (O, C(n + order, order) - 1); bias (O) or None; returns (..., O) in x's dtype.
    Runs the custom op ``torch.ops.physkernels.taylor_linear`` under tracing; plain eager calls with gradients take
    a lighter ``autograd.Function`` over the same kernels, and plain eager calls without gradients call the kernel
    directly. The fused backward runs for first-order gradients; with ``create_graph=True`` the backward is the
    reference's VJP in plain torch, so second derivatives work. Inside ``torch.func`` transforms and for an empty
    batch the reference formula runs.
    """
    x, weight, bias, order = op.autocast(x, weight, bias, order)
    order = validate(x, weight, bias, order)
    y = op(x.reshape(-1, x.shape[-1]), weight, bias, order)
    return y.reshape(*x.shape[:-1], weight.shape[0])
