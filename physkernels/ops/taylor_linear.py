"""``taylor_linear``: the direct Taylor-expansion layer of the TaylorNet paper (Eq. 2-3).

    y[b, a] = bias[a] + sum_t W[a, t] * F[b, t],    F[b, t] = x[b, i1] * ... * x[b, id]

over all monomials t = (i1 <= ... <= id) of degree d = 1..order (``physkernels.taylor.monomials`` order).
Shapes: x (..., n), weight (O, T) with T = C(n + order, order) - 1, bias (O) or None, y (..., O).

Backends: ``reference`` materialises F (B, T) from the explicit monomial index list and multiplies; ``cpp``,
``triton`` and ``cuda`` are fused: they build features tile by tile (a lower-degree prefix monomial times one x)
and contract each tile at once, so no (B, T) tensor exists. Backward returns dx, dW and dbias.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _extensions
from .._kernel_args import Out, launch
from ..backends import OpDispatcher
from ..taylor import check_order, monomial_count, monomials, row_table, term_rows
from ._eager import differentiable_vjp, plain_eager_call, reference_path

__all__ = ["taylor_linear", "reference_taylor_linear", "reference_features"]

_tables: dict[tuple, torch.Tensor] = {}


def _cached(kind: str, n: int, order: int, device: torch.device) -> torch.Tensor:
    """Index tables as int32 tensors on ``device``, built once per (n, order, device)."""
    key = (kind, n, order, str(device))
    if key not in _tables:
        if kind == "rows":
            array = row_table(n, order)
        elif kind == "term_rows":
            array = term_rows(n, order)
        else:  # "monomials": (T, order), -1 past each term's degree
            terms = monomials(n, order)
            array = np.full((len(terms), order), -1, dtype=np.int64)
            for t, m in enumerate(terms):
                array[t, :len(m)] = m
        _tables[key] = torch.from_numpy(np.array(array, copy=True)).to(device)
    return _tables[key]


def reference_features(x: torch.Tensor, order: int) -> torch.Tensor:
    """All monomials of x (B, n) up to ``order``, materialised: (B, T), each the product of its index tuple."""
    n = x.shape[-1]
    index = _cached("monomials", n, order, x.device)
    padded = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)   # index -1 picks the trailing 1
    features = padded[:, index[:, 0]]
    for k in range(1, order):
        features = features * padded[:, index[:, k]]
    return features


def reference_taylor_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            order: int) -> torch.Tensor:
    """Explicit-monomial reference: materialised features (B, T) times W^T, plus bias. Plain torch, any shape."""
    lead = x.shape[:-1]
    y = reference_features(x.reshape(-1, x.shape[-1]), order) @ weight.t()
    if bias is not None:
        y = y + bias
    return y.reshape(*lead, weight.shape[0])


# On a GPU the Triton kernels beat the CUDA C++ ones (H100, n = 49, float32: fwd+bwd 1.7-2.4x faster at orders 2
# and 3, bench/results/full_cuda_taylor.md), so auto tries Triton first there; float64 runs the CUDA kernels, the
# GPU path verified in float64 (tests/test_gpu.py).
_AUTO = {"cpu": ("cpp", "reference"), "cuda": ("triton", "cuda", "reference"),
         "cuda:float64": ("cuda", "triton", "reference")}
_forward = OpDispatcher("taylor_linear", auto_order=_AUTO)
_backward = OpDispatcher("taylor_linear_backward", auto_order=_AUTO)


@_forward.register("reference")
def _forward_reference(x, weight, bias, order):
    return reference_taylor_linear(x, weight, bias, order)


@_backward.register("reference")
def _backward_reference(grad, x, weight, order, need_input, need_weight):
    """VJP of the reference: dW = g^T F, dbias = sum_b g, dx_i = sum over each factor slot of G * (other factors)."""
    n = x.shape[1]
    dweight = grad.t() @ reference_features(x, order) if need_weight else torch.zeros_like(weight)
    dx = torch.zeros_like(x)
    if need_input:
        index = _cached("monomials", n, order, x.device)
        padded = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        factors = [padded[:, index[:, k]] for k in range(order)]
        feature_grad = grad @ weight                                   # (B, T)
        dpadded = torch.zeros_like(padded)
        for k in range(order):
            others = torch.ones_like(feature_grad)
            for m in range(order):
                if m != k:
                    others = others * factors[m]
            dpadded.index_add_(1, index[:, k] % (n + 1), feature_grad * others)
        dx = dpadded[:, :n].contiguous()
    return dx, dweight, grad.sum(0)


def _threads() -> int:
    return torch.get_num_threads()


def _cpp_kernels(dtype: torch.dtype):
    module = _extensions.cpu().taylor
    suffix = {torch.float32: "_f32", torch.float64: "_f64"}[dtype]
    return (getattr(module, "forward" + suffix), getattr(module, "backward_input" + suffix),
            getattr(module, "backward_weight" + suffix))


@_forward.register("cpp")
def _forward_cpp(x, weight, bias, order):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows = _cached("rows", n, order, x.device)
    y = x.new_empty(batch, out)
    launch(_cpp_kernels(x.dtype)[0], x, weight, bias, rows, rows.shape[0], rows.shape[1], Out(y), batch, n, out,
           terms, _threads(), dtype=x.dtype)
    return y


@_backward.register("cpp")
def _backward_cpp(grad, x, weight, order, need_input, need_weight):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows = _cached("rows", n, order, x.device)
    _, backward_input, backward_weight = _cpp_kernels(x.dtype)
    dx, dweight, dbias = x.new_zeros(batch, n), weight.new_zeros(out, terms), grad.new_empty(out)
    if need_input:
        launch(backward_input, grad, x, weight, rows, rows.shape[0], rows.shape[1], Out(dx), batch, n, out, terms,
               _threads(), dtype=x.dtype)
    launch(backward_weight, grad, x, rows, rows.shape[0], rows.shape[1], Out(dweight if need_weight else None),
           Out(dbias), batch, n, out, terms if need_weight else 0, _threads(), dtype=x.dtype)
    return dx, dweight, dbias


def _tables_for(x, order):
    n = x.shape[1]
    return _cached("rows", n, order, x.device), _cached("term_rows", n, order, x.device)


@_forward.register("triton")
def _forward_triton(x, weight, bias, order):
    from ..kernels import taylor_triton

    bias = bias.contiguous() if bias is not None else None
    return taylor_triton.forward(x.contiguous(), weight.contiguous(), bias, *_tables_for(x, order))


@_backward.register("triton")
def _backward_triton(grad, x, weight, order, need_input, need_weight):
    from ..kernels import taylor_triton

    grad, x, weight = grad.contiguous(), x.contiguous(), weight.contiguous()
    rows, term_rows = _tables_for(x, order)
    dx = taylor_triton.backward_input(grad, x, weight, rows, term_rows) if need_input else torch.zeros_like(x)
    dweight = (taylor_triton.backward_weight(grad, x, rows, term_rows, weight.shape[1]) if need_weight
               else torch.zeros_like(weight))
    return dx, dweight, grad.sum(0)


def _cuda_kernels(x: torch.Tensor):
    module = _extensions.cuda().taylor
    suffix = {torch.float32: "_f32", torch.float64: "_f64"}[x.dtype]
    return (getattr(module, "forward" + suffix), getattr(module, "backward_input" + suffix),
            getattr(module, "backward_weight" + suffix), torch.cuda.current_stream(x.device).cuda_stream)


@_forward.register("cuda")
def _forward_cuda(x, weight, bias, order):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows, _ = _tables_for(x, order)
    forward, _, _, stream = _cuda_kernels(x)
    y = x.new_empty(batch, out)
    launch(forward, x, weight, bias, rows, rows.shape[0], rows.shape[1], Out(y), batch, n, out, terms, stream,
           dtype=x.dtype)
    return y


@_backward.register("cuda")
def _backward_cuda(grad, x, weight, order, need_input, need_weight):
    (batch, n), (out, terms) = x.shape, weight.shape
    rows, term_rows = _tables_for(x, order)
    _, backward_input, backward_weight, stream = _cuda_kernels(x)
    dx, dweight = x.new_zeros(batch, n), weight.new_zeros(out, terms)
    if need_input:
        compensation = x.new_zeros(batch, n)  # scratch of the compensated dx sums
        launch(backward_input, grad, x, weight, rows, rows.shape[0], rows.shape[1], Out(dx), Out(compensation),
               batch, n, out, terms, stream, dtype=x.dtype)
    if need_weight:
        launch(backward_weight, grad, x, rows, rows.shape[1], term_rows, Out(dweight), batch, n, out, terms, stream,
               dtype=x.dtype)
    return dx, dweight, grad.sum(0)


def _forward_impl(x, weight, bias, order):
    return _forward.get(x.device, dtype=x.dtype)(x, weight, bias, order)


@torch.library.custom_op("physkernels::taylor_linear", mutates_args=())
def _taylor_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, order: int) -> torch.Tensor:
    return _forward_impl(x, weight, bias, order)


@_taylor_linear.register_fake
def _(x, weight, bias, order):
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("physkernels::taylor_linear_backward", mutates_args=())
def _taylor_linear_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, order: int,
                            need_input: bool, need_weight: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward.get(x.device, dtype=x.dtype)(grad, x, weight, order, need_input, need_weight)


@_taylor_linear_backward.register_fake
def _(grad, x, weight, order, need_input, need_weight):
    return torch.empty_like(x), torch.empty_like(weight), grad.new_empty(weight.shape[0])


def _differentiable_backward(grad, x, weight, order):
    """``(dx, dW, dbias)`` from plain torch ops (the reference's VJP): the backward when autograd records it."""
    dx, dweight = differentiable_vjp(lambda x, w: reference_taylor_linear(x, w, None, order), (x, weight), grad)
    return dx, dweight, grad.sum(0)


def _setup_context(ctx, inputs, output):
    x, weight, bias, order = inputs
    ctx.save_for_backward(x, weight)
    ctx.order = order
    ctx.has_bias = bias is not None


def _autograd_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    if torch.is_grad_enabled():  # create_graph=True
        dx, dweight, dbias = _differentiable_backward(grad, x, weight, ctx.order)
    else:
        dx, dweight, dbias = _taylor_linear_backward(grad, x, weight, ctx.order, need_x, need_w)
    return (dx if need_x else None, dweight if need_w else None,
            dbias if (ctx.has_bias and need_b) else None, None)


_taylor_linear.register_autograd(_autograd_backward, setup_context=_setup_context)


class _EagerTaylorLinear(torch.autograd.Function):
    """Eager-mode twin of the custom op (see :mod:`physkernels.ops._eager`): the same backend implementations,
    resolved once in the forward, without the custom-op dispatch layers."""

    @staticmethod
    def forward(ctx, x, weight, bias, order):
        ctx.backend = _forward.resolve(x.device, dtype=x.dtype)
        ctx.save_for_backward(x, weight)
        ctx.order, ctx.has_bias = order, bias is not None
        return _forward.get(x.device, ctx.backend)(x, weight, bias, order)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: a backward autograd can differentiate again
            dx, dweight, dbias = _differentiable_backward(grad, x, weight, ctx.order)
        else:
            dx, dweight, dbias = _backward.get(x.device, ctx.backend)(grad, x, weight, ctx.order, need_x, need_w)
        return (dx if need_x else None, dweight if need_w else None,
                dbias if (ctx.has_bias and need_b) else None, None)


def _check_tensor(name: str, t, dims: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if dims is not None and t.dim() != dims:
        raise ValueError(f"{name} must be {dims}-D, got shape {tuple(t.shape)}")


def taylor_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, order: int) -> torch.Tensor:
    """y = bias + weight @ monomials(x) over all monomials of degree 1..order (fused; see module docstring).

    x (..., n); weight (O, C(n + order, order) - 1); bias (O) or None; returns (..., O) in x's dtype.
    Runs the custom op ``torch.ops.physkernels.taylor_linear`` under tracing; plain eager calls with gradients take
    a lighter ``autograd.Function`` over the same kernels, and plain eager calls without gradients call the kernel
    directly. The fused backward runs for first-order gradients; with ``create_graph=True`` the backward is the
    reference's VJP in plain torch, so second derivatives work. Inside ``torch.func`` transforms and for an empty
    batch the reference formula runs.
    """
    order = check_order(order)
    _check_tensor("x", x)
    _check_tensor("weight", weight, dims=2)
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (..., in_features) with in_features >= 1, got {tuple(x.shape)}")
    n = x.shape[-1]
    terms = monomial_count(n, order)
    if weight.shape[1] != terms:
        raise ValueError(f"weight must have shape (out_features, {terms}) for in_features={n} and order={order} "
                         f"(C(n + order, order) - 1 terms), got {tuple(weight.shape)}")
    if bias is not None:
        _check_tensor("bias", bias, dims=1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            raise TypeError(f"{name} must match x's dtype and device ({x.dtype}, {x.device}), "
                            f"got {t.dtype} on {t.device}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, n)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if reference_path((x2, weight, bias)):
        y = reference_taylor_linear(x2, weight, bias, order)
    elif not plain_eager_call((x, weight, bias)):
        y = _taylor_linear(x2, weight, bias, order)
    elif needs_grad:
        y = _EagerTaylorLinear.apply(x2, weight, bias, order)
    else:  # eager inference: the kernel directly, without the dispatch layers
        y = _forward_impl(x2, weight, bias, order)
    return y.reshape(*lead, weight.shape[0])
