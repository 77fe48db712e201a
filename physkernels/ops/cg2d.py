"""CG2d: the fused second-order coarse-graining convolution of TaylorNet (Eq. 4 of the TaylorNet paper).

For x of shape (B, C_in, H, W), a kernel (kh, kw) with P = kh*kw patch positions p = i*kw + j, stride, zero
padding, dilation and groups, every input channel's patch is expanded to second (optionally third) order and the
per-channel polynomials are summed into each output channel::

    y[b,o,r] = bias[o] + sum_{c in o's group} ( sum_p         W1[o,c,p]       x_p
                                              + sum_{p<=q}    W2[o,c,(p,q)]   x_p x_q
                                              + sum_{p<=q<=s} W3[o,c,(p,q,s)] x_p x_q x_s )   (optional)

with ``x_p = x[b, c, ho*stride_h - pad_h + i*dil_h, wo*stride_w - pad_w + j*dil_w]`` (0 outside the image) and
r = (ho, wo). The output size follows nn.Conv2d's formula. Shapes (Cg = C_in / groups):

* ``weight``  (W1): ``(C_out, Cg, kh, kw)``, nn.Conv2d's layout;
* ``weight2`` (W2): ``(C_out, Cg, P(P+1)/2)``, pairs (p, q), p <= q, in ``torch.triu_indices(P, P)`` order;
* ``weight3`` (W3, optional): ``(C_out, Cg, P(P+1)(P+2)/6)``, triples p <= q <= s in lexicographic order
  (``itertools.combinations_with_replacement(range(P), 3)``);
* ``bias``: ``(C_out,)`` or None.

Per patch and channel there are ``F = P + P(P+1)/2 (+ P(P+1)(P+2)/6)`` features ("Taylor terms"), so the layer does
F/P times a convolution's multiply-adds (3.5x for 2x2 kernels at second order).

Backends: ``reference`` (:func:`reference_cg2d`, a direct sum over kernel offsets and pairs in plain torch, with
autograd for the gradients), ``cpp`` (fused OpenMP kernels: features are formed per tile of output positions in a
small per-thread buffer, never as an im2col or pairwise-product tensor), ``triton`` and ``cuda`` (order 2 only).
:func:`unfold_cg2d` is the textbook unfold -> pairwise products -> matmul formulation the benchmark compares with.
"""

from __future__ import annotations

import itertools
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import _extensions
from .._kernel_args import Out, Strided, launch
from ..backends import BackendUnavailableError, OpDispatcher, get_backend, why_unavailable
from ._eager import differentiable_vjp, plain_eager_call, reference_path

__all__ = ["cg2d", "reference_cg2d", "unfold_cg2d", "num_pairs", "num_triples", "output_size"]

IntPair = Union[int, Sequence[int]]


def num_pairs(p: int) -> int:
    """Number of second-order terms x_p x_q (p <= q) of a P-position patch: P(P+1)/2."""
    return p * (p + 1) // 2


def num_triples(p: int) -> int:
    """Number of third-order terms x_p x_q x_s (p <= q <= s) of a P-position patch: P(P+1)(P+2)/6."""
    return p * (p + 1) * (p + 2) // 6


def _pairs(p: int) -> list[tuple[int, int]]:
    return list(itertools.combinations_with_replacement(range(p), 2))


def _triples(p: int) -> list[tuple[int, int, int]]:
    return list(itertools.combinations_with_replacement(range(p), 3))


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """nn.Conv2d's output length along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------------------------------------------
# Reference math (plain torch). Both are differentiable by autograd; the first is the independent reference every
# backend is tested against, the second is the unfold baseline of the benchmark.
# ----------------------------------------------------------------------------------------------------------------
def _shifted_patches(x, kh, kw, stride, padding, dilation):
    """List of P tensors (B, C, Ho, Wo): x_p for every kernel offset p = i*kw + j (zero padding)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = F.pad(x, (pw, pw, ph, ph))
    ho = output_size(x.shape[2], kh, sh, ph, dh)
    wo = output_size(x.shape[3], kw, sw, pw, dw)
    return [xp[:, :, i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]
            for i in range(kh) for j in range(kw)]


def reference_cg2d(x, weight, weight2, weight3=None, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                   groups=1):
    """Direct evaluation of the CG2d sum: one term per kernel offset, pair and triple (slow, obviously right)."""
    b, c_in = x.shape[:2]
    c_out, cg, kh, kw = weight.shape
    og = c_out // groups
    patches = _shifted_patches(x, kh, kw, _pair(stride), _pair(padding), _pair(dilation))
    ho, wo = patches[0].shape[2:]

    def grouped(t):  # (B, C_in, Ho, Wo) -> (B, G, Cg, Ho, Wo)
        return t.reshape(b, groups, cg, ho, wo)

    def mix(term, w):  # sum over the group's channels: w (C_out, Cg) -> (B, C_out, Ho, Wo)
        return torch.einsum("bgchw,goc->bgohw", grouped(term), w.reshape(groups, og, cg)).reshape(b, c_out, ho, wo)

    w1 = weight.reshape(c_out, cg, kh * kw)
    y = sum(mix(patches[p], w1[:, :, p]) for p in range(kh * kw))
    for k, (p, q) in enumerate(_pairs(kh * kw)):
        y = y + mix(patches[p] * patches[q], weight2[:, :, k])
    if weight3 is not None:
        for k, (p, q, s) in enumerate(_triples(kh * kw)):
            y = y + mix(patches[p] * patches[q] * patches[s], weight3[:, :, k])
    if bias is not None:
        y = y + bias.reshape(1, c_out, 1, 1)
    return y


def unfold_cg2d(x, weight, weight2, weight3=None, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                groups=1):
    """Unfold -> pairwise (and triple) products -> one matmul per group: the memory-hungry textbook formulation."""
    b, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    P, og = kh * kw, c_out // groups
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    ho = output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride).reshape(b, c_in, P, ho * wo)
    pi, qi = torch.triu_indices(P, P, device=x.device)
    feats = [cols, cols[:, :, pi] * cols[:, :, qi]]
    weights = [weight.reshape(c_out, cg, P), weight2]
    if weight3 is not None:
        t = torch.tensor(_triples(P), device=x.device).T
        feats.append(cols[:, :, t[0]] * cols[:, :, t[1]] * cols[:, :, t[2]])
        weights.append(weight3)
    feats = torch.cat(feats, dim=2).reshape(b, groups, -1, ho * wo)       # (B, G, Cg*F, L)
    wcat = torch.cat(weights, dim=2).reshape(groups, og, -1)             # (G, Og, Cg*F)
    y = torch.matmul(wcat, feats).reshape(b, c_out, ho, wo)
    return y if bias is None else y + bias.reshape(1, c_out, 1, 1)


# ----------------------------------------------------------------------------------------------------------------
# Argument checking
# ----------------------------------------------------------------------------------------------------------------
def _pair(value, name: str = "argument") -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                  for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def _check_tensor(name, t, x, shape):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but x has dtype {x.dtype}; they must match")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}; they must match")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _validate(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    """Check every argument; return normalised (stride, padding, dilation) pairs."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C_in, H, W) or unbatched (C_in, H, W), got shape {tuple(x.shape)}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-d (C_out, C_in/groups, kh, kw), got shape {tuple(weight.shape)}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if min(padding) < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    c_out, cg, kh, kw = weight.shape
    if min(c_out, cg, kh, kw) < 1:
        raise ValueError(f"weight has an empty dimension: shape {tuple(weight.shape)}")
    c_in = x.shape[1]
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both x's channels ({c_in}) and weight's C_out ({c_out})")
    if cg * groups != c_in:
        raise ValueError(f"x has {c_in} channels but weight expects in_channels = {cg} * groups {groups} = "
                         f"{cg * groups}")
    for axis, (size, k, p, d) in enumerate(zip(x.shape[2:], (kh, kw), padding, dilation)):
        span = d * (k - 1) + 1
        if span > size + 2 * p:
            raise ValueError(f"kernel_size {(kh, kw)} with dilation {dilation} spans {span} along spatial axis "
                             f"{axis} but the padded input x is only {size + 2 * p} long")
    _check_tensor("weight", weight, x, weight.shape)
    P = kh * kw
    _check_tensor("weight2", weight2, x, (c_out, cg, num_pairs(P)))
    if weight3 is not None:
        _check_tensor("weight3", weight3, x, (c_out, cg, num_triples(P)))
    if bias is not None:
        _check_tensor("bias", bias, x, (c_out,))
    return stride, padding, dilation


def _out_shape(x, weight, stride, padding, dilation):
    c_out, _, kh, kw = weight.shape
    return (x.shape[0], c_out, output_size(x.shape[2], kh, stride[0], padding[0], dilation[0]),
            output_size(x.shape[3], kw, stride[1], padding[1], dilation[1]))


# ----------------------------------------------------------------------------------------------------------------
# Backends
#   forward(x, weight, weight2, weight3|None, bias|None, stride, padding, dilation, groups) -> y
#   backward(grad, same inputs..., compute_dx) -> (dx|None, dweight, dweight2, dweight3|None, dbias|None)
# ----------------------------------------------------------------------------------------------------------------
_AUTO = {"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton", "reference")}
_forward = OpDispatcher("cg2d", auto_order=_AUTO)
_backward = OpDispatcher("cg2d_backward", auto_order=_AUTO)
_SECOND_ORDER_ONLY = ("triton", "cuda")
_CUDA_MAX_PATCH = 16  # physkernels._C_cuda.cg2d.max_patch


def _resolve(device, third_order: bool, patch: int) -> str:
    """The backend to run (its forward and backward implementations share the name). ``auto`` skips backends that
    cannot take the call: triton/cuda lack third-order terms, the CUDA kernels take patches of at most 16
    positions."""
    name = _forward.resolve(device)
    reason = None
    if third_order and name in _SECOND_ORDER_ONLY:
        reason = f"backend {name!r} implements order 2 only (weight3 was given)"
        fallback = "cpp" if device.type == "cpu" else "reference"
    elif name == "cuda" and patch > _CUDA_MAX_PATCH:
        reason = f"the cuda backend takes kernels of at most {_CUDA_MAX_PATCH} positions, got {patch}"
        fallback = "triton" if why_unavailable("triton", device) is None else "reference"
    if reason is None:
        return name
    if get_backend() != "auto":
        raise BackendUnavailableError(f"cg2d: {reason}; choose another backend")
    return fallback


@_forward.register("reference")
def _forward_reference(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    return reference_cg2d(x, weight, weight2, weight3, bias, stride, padding, dilation, groups)


@_backward.register("reference")
def _backward_reference(grad, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, compute_dx):
    """The vector-Jacobian product of :func:`reference_cg2d` (``torch.func.vjp``, which also works inside the
    custom op, where the dispatcher has switched plain autograd off, and is itself differentiable)."""
    dx, dw1, dw2, dw3, dbias = differentiable_vjp(
        lambda *t: reference_cg2d(*t, stride, padding, dilation, groups), (x, weight, weight2, weight3, bias), grad)
    return (dx if compute_dx else None), dw1, dw2, dw3, dbias


def _geometry(x, weight, stride, padding, dilation, groups, order):
    """The integer arguments every compiled kernel takes, in its order."""
    b, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    return [b, c_in, h, w, *x.stride(), c_out, kh, kw, *stride, *padding, *dilation, groups, order]


def _suffix(dtype) -> str:
    return {torch.float32: "f32", torch.float64: "f64"}[dtype]


@_forward.register("cpp")
def _forward_cpp(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    y = x.new_empty(_out_shape(x, weight, stride, padding, dilation))
    geometry = _geometry(x, weight, stride, padding, dilation, groups, 3 if weight3 is not None else 2)
    launch(getattr(_extensions.cpu().cg2d, f"forward_{_suffix(x.dtype)}"), Strided(x), weight, weight2, weight3,
           bias, Out(y), *geometry, torch.get_num_threads(), dtype=x.dtype)
    return y


@_backward.register("cpp")
def _backward_cpp(grad, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, compute_dx):
    dx = x.new_empty(x.shape) if compute_dx else None
    dw1, dw2 = weight.new_empty(weight.shape), weight2.new_empty(weight2.shape)
    dw3 = weight3.new_empty(weight3.shape) if weight3 is not None else None
    dbias = x.new_empty(weight.shape[0]) if bias is not None else None
    geometry = _geometry(x, weight, stride, padding, dilation, groups, 3 if weight3 is not None else 2)
    launch(getattr(_extensions.cpu().cg2d, f"backward_{_suffix(x.dtype)}"), grad, Strided(x), weight, weight2,
           weight3, Out(dx), Out(dw1), Out(dw2), Out(dw3), Out(dbias), *geometry, torch.get_num_threads(),
           dtype=x.dtype)
    return dx, dw1, dw2, dw3, dbias


@_forward.register("triton")
def _forward_triton(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    from ..kernels import cg2d_triton

    return cg2d_triton.forward(x, weight, weight2, bias, stride, padding, dilation, groups)


@_backward.register("triton")
def _backward_triton(grad, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, compute_dx):
    from ..kernels import cg2d_triton

    dx, dw1, dw2, dbias = cg2d_triton.backward(grad, x, weight, weight2, bias, stride, padding, dilation, groups,
                                               compute_dx)
    return dx, dw1, dw2, None, dbias


def _cuda_geometry(x, weight, stride, padding, dilation, groups):
    return _geometry(x, weight, stride, padding, dilation, groups, 2)[:-1]  # the CUDA kernels are order 2


@_forward.register("cuda")
def _forward_cuda(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    y = x.new_empty(_out_shape(x, weight, stride, padding, dilation))
    launch(getattr(_extensions.cuda().cg2d, f"forward_{_suffix(x.dtype)}"), Strided(x), weight, weight2, bias, Out(y),
           *_cuda_geometry(x, weight, stride, padding, dilation, groups),
           torch.cuda.current_stream(x.device).cuda_stream, dtype=x.dtype)
    return y


@_backward.register("cuda")
def _backward_cuda(grad, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, compute_dx):
    module = _extensions.cuda().cg2d
    dx = x.new_empty(x.shape) if compute_dx else None
    dw1, dw2 = weight.new_empty(weight.shape), weight2.new_empty(weight2.shape)
    dbias = x.new_empty(weight.shape[0]) if bias is not None else None
    geometry = _cuda_geometry(x, weight, stride, padding, dilation, groups)
    spatial = geometry[:4] + geometry[8:]  # without the strides
    features = weight.shape[2] * weight.shape[3] + weight2.shape[2]
    slabs = module.weight_grad_slabs(*spatial)
    partial = x.new_empty(slabs, weight.shape[0], weight.shape[1] * features)  # per-slab weight-gradient partials
    launch(getattr(module, f"backward_{_suffix(x.dtype)}"), grad, Strided(x), weight, weight2, Out(dx), Out(dw1),
           Out(dw2), Out(dbias), Out(partial), *geometry, torch.cuda.current_stream(x.device).cuda_stream,
           dtype=x.dtype)
    return dx, dw1, dw2, None, dbias


# ----------------------------------------------------------------------------------------------------------------
# Custom ops
# ----------------------------------------------------------------------------------------------------------------
@torch.library.custom_op("physkernels::cg2d", mutates_args=())
def _cg2d(x: torch.Tensor, weight: torch.Tensor, weight2: torch.Tensor, weight3: Optional[torch.Tensor],
          bias: Optional[torch.Tensor], stride: list[int], padding: list[int], dilation: list[int],
          groups: int) -> torch.Tensor:
    impl = _forward.get_impl(_resolve(x.device, weight3 is not None, weight.shape[2] * weight.shape[3]))
    return impl(x, weight, weight2, weight3, bias, tuple(stride), tuple(padding), tuple(dilation), groups)


@_cg2d.register_fake
def _(x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
    return x.new_empty(_out_shape(x, weight, stride, padding, dilation))


@torch.library.custom_op("physkernels::cg2d_backward", mutates_args=())
def _cg2d_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, weight2: torch.Tensor,
                   weight3: Optional[torch.Tensor], bias: Optional[torch.Tensor], stride: list[int],
                   padding: list[int], dilation: list[int], groups: int,
                   compute_dx: bool) -> list[torch.Tensor]:
    """Returns [dx, dweight, dweight2, dweight3, dbias]; absent ones (no W3, no bias, not compute_dx) are empty."""
    impl = _backward.get_impl(_resolve(x.device, weight3 is not None, weight.shape[2] * weight.shape[3]))
    grads = impl(grad, x, weight, weight2, weight3, bias, tuple(stride), tuple(padding), tuple(dilation), groups,
                 compute_dx)
    return [g if g is not None else x.new_empty(0) for g in grads]


@_cg2d_backward.register_fake
def _(grad, x, weight, weight2, weight3, bias, stride, padding, dilation, groups, compute_dx):
    def like(t, present):
        return t.new_empty(t.shape) if present else x.new_empty(0)

    return [like(x, compute_dx), like(weight, True), like(weight2, True),
            like(weight3 if weight3 is not None else x, weight3 is not None),
            like(bias if bias is not None else x, bias is not None)]


def _setup_context(ctx, inputs, output):
    x, weight, weight2, weight3, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight, weight2, weight3, bias)
    ctx.geometry = (stride, padding, dilation, groups)


def _backward_fn(ctx, grad):
    x, weight, weight2, weight3, bias = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.geometry
    backward = _backward_reference if torch.is_grad_enabled() else _cg2d_backward  # create_graph: differentiable
    dx, dw1, dw2, dw3, dbias = backward(grad, x, weight, weight2, weight3, bias, stride, padding, dilation, groups,
                                        ctx.needs_input_grad[0])
    return (dx if ctx.needs_input_grad[0] else None, dw1, dw2, dw3 if weight3 is not None else None,
            dbias if bias is not None else None, None, None, None, None)


_cg2d.register_autograd(_backward_fn, setup_context=_setup_context)


class _EagerCG2d(torch.autograd.Function):
    """Eager-mode twin of the custom op: the same backend implementations without the custom-op dispatch layers
    (their cost, a few hundred microseconds per forward+backward on a 2-core CPU, is as large as a batch-1 layer's
    whole kernel time). The backend is resolved once, in the forward, and the backward runs the same one.
    ``torch.compile``, export and fake-tensor tracing use the custom op instead (see :func:`cg2d`)."""

    @staticmethod
    def forward(ctx, x, weight, weight2, weight3, bias, stride, padding, dilation, groups):
        ctx.backend = _resolve(x.device, weight3 is not None, weight.shape[2] * weight.shape[3])
        ctx.save_for_backward(x, weight, weight2, weight3, bias)
        ctx.geometry = (stride, padding, dilation, groups)
        return _forward.get_impl(ctx.backend)(x, weight, weight2, weight3, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight, weight2, weight3, bias = ctx.saved_tensors
        # create_graph=True: the reference VJP, which autograd can differentiate again
        backward = _backward_reference if torch.is_grad_enabled() else _backward.get_impl(ctx.backend)
        dx, dw1, dw2, dw3, dbias = backward(grad, x, weight, weight2, weight3, bias, *ctx.geometry,
                                            ctx.needs_input_grad[0])
        return dx, dw1, dw2, dw3, dbias, None, None, None, None


def cg2d(x: torch.Tensor, weight: torch.Tensor, weight2: torch.Tensor, bias: Optional[torch.Tensor] = None,
         stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, *,
         weight3: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Second-order (third with ``weight3``) coarse-graining convolution; see the module docstring for the math.

    Args:
        x: (B, C_in, H, W) (any B >= 0) or unbatched (C_in, H, W), float32 or float64; NCHW or channels_last.
        weight: W1, (C_out, C_in/groups, kh, kw).
        weight2: W2, (C_out, C_in/groups, P(P+1)/2), P = kh*kw, pairs in ``torch.triu_indices(P, P)`` order.
        bias: (C_out,) or None.
        stride, padding, dilation: int or pair, as nn.Conv2d (zero padding).
        groups: as nn.Conv2d.
        weight3: optional W3, (C_out, C_in/groups, P(P+1)(P+2)/6), triples p <= q <= s lexicographic.

    Returns:
        y: (B, C_out, Ho, Wo) with nn.Conv2d's output size, contiguous NCHW ((C_out, Ho, Wo) for unbatched x).
        Differentiable in every tensor, also twice: with ``create_graph=True`` the backward is the reference's
        VJP in plain torch (the fused backward kernels serve first-order gradients).

    Runs the custom op ``torch.ops.physkernels.cg2d`` under ``torch.compile``, export and fake-tensor tracing; in
    eager mode it calls the same kernels through a lighter ``autograd.Function``. Inside ``torch.func`` transforms
    and for an empty batch it evaluates :func:`reference_cg2d`.
    """
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        return cg2d(x.unsqueeze(0), weight, weight2, bias, stride, padding, dilation, groups,
                    weight3=weight3).squeeze(0)
    stride, padding, dilation = _validate(x, weight, weight2, weight3, bias, stride, padding, dilation, groups)
    if reference_path((x, weight, weight2, weight3, bias)):
        return reference_cg2d(x, weight, weight2, weight3, bias, stride, padding, dilation, groups)
    if plain_eager_call((x, weight, weight2, weight3, bias)):
        return _EagerCG2d.apply(x, weight, weight2, weight3, bias, stride, padding, dilation, groups)
    return _cg2d(x, weight, weight2, weight3, bias, list(stride), list(padding), list(dilation), groups)
