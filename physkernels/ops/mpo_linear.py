"""MPO (tensor-train) linear map: ``y = x @ W^T + bias`` with W given by a matrix product operator (Eq. 5).

Core layout: ``cores[k]`` has shape ``(D_{k-1}, I_k, J_k, D_k)`` with ``D_0 = D_n = 1``. The represented weight has
``nn.Linear.weight``'s shape ``(prod J, prod I)``::

    W[j_1..j_n, i_1..i_n] = cores[0][:, i_1, j_1, :] @ cores[1][:, i_2, j_2, :] @ ... @ cores[n-1][:, i_n, j_n, :]

with row-major multi-indices (``i_1`` most significant). ``mpo_linear(x, cores, bias)`` takes x of shape
``(..., prod I)`` and returns ``(..., prod J)``.

Backends: ``reference`` (the dense reconstruction below, independent of every fast path), ``cpp`` and
``triton``/``cuda`` run the contraction plan chosen by :func:`physkernels.mpo.plan` (a fused chain kernel, a chain
of batched GEMMs, or W reconstructed for one GEMM, whichever the cost model predicts fastest).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import torch

from .. import _extensions
from .._kernel_args import Out, device_constant, launch
from ..backends import OpDispatcher
from ..mpo import contract, planner
from ..mpo.cores import mpo_shapes, reference_mpo_weight
from ._eager import differentiable_vjp, plain_eager_call, reference_path

__all__ = ["mpo_linear", "reference_mpo_linear", "reference_mpo_weight", "mpo_shapes"]


# ----------------------------------------------------------------------------------------------------------------
# Reference math (plain torch; tests and benchmarks compare every backend with it). The dense weight of Eq. 5 and
# the layout checks live in physkernels.mpo.cores (shared with the layers, TT-SVD and the planner).
# ----------------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------------------------
def _validate(x, cores, bias) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
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


# ----------------------------------------------------------------------------------------------------------------
# Backends. Every implementation works on x of shape (batch, prod I).
# forward(x, cores, keep_states=False) -> y (batch, prod J), or with keep_states (y, saved) for the backward;
# backward(grad_y, x, cores, saved=None, need_x=True) -> [grad_x, *grad_cores] (saved=None: plan and recompute on
# its own; need_x=False: grad_x is None and not computed)
# ----------------------------------------------------------------------------------------------------------------
_AUTO = {"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton", "reference")}
_forward = OpDispatcher("mpo_linear", auto_order=_AUTO)
_backward = OpDispatcher("mpo_linear_backward", auto_order=_AUTO)


@_forward.register("reference")
def _forward_reference(x, cores, keep_states=False):
    y = x @ reference_mpo_weight(cores).transpose(0, 1)
    return (y, (None, [])) if keep_states else y


@_backward.register("reference")
def _backward_reference(grad, x, cores, saved=None, need_x=True):
    weight = reference_mpo_weight(cores)
    grad_w = grad.transpose(0, 1) @ x
    return [grad @ weight if need_x else None, *reference_weight_grad_to_cores(grad_w, cores)]


_plan_memo: dict = {}


def _plan(x: torch.Tensor, cores, objective: str, kernels: tuple[str, ...]) -> planner.Plan:
    """The planner's choice for this call (memoised on the raw shapes: this runs on every call)."""
    key = (tuple(c.shape for c in cores), x.shape[0], x.dtype, x.device, objective, kernels, torch.get_num_threads())
    found = _plan_memo.get(key)
    if found is None:
        if len(_plan_memo) > 4096:
            _plan_memo.clear()
        in_shape, out_shape, ranks = mpo_shapes(cores)
        found = _plan_memo[key] = planner.plan(in_shape, out_shape, ranks, x.shape[0], x.dtype, x.device,
                                               kernels=kernels, objective=objective)
    return found


def _require_float_dtype(x, backend: str):
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the {backend} backend of mpo_linear supports float32 and float64, got x of dtype {x.dtype}")


def _cpp_kernels() -> tuple[str, ...]:
    module = _extensions.load("_C")
    return ("gemm", "fused") if module is not None and hasattr(module, "mpo") else ("gemm",)


def _planned_forward(x, cores, keep_states, kernels, fused):
    """Forward by the plan; with ``keep_states`` also ``(plan, states)`` for :func:`_planned_backward`."""
    p = _plan(x, cores, "training" if keep_states else "forward", kernels)
    out = contract.run_forward(p, x, cores, fused=fused, keep_states=keep_states)
    return (out[0], (p, out[1])) if keep_states else out


def _planned_backward(grad, x, cores, saved, kernels, fused, need_x=True):
    """Backward by the forward's plan and kept states, or (custom op) by its own plan, recomputing; dx is None
    when not ``need_x``."""
    p, states = saved if saved is not None else (_plan(x, cores, "backward", kernels), None)
    return contract.run_backward(p, grad, x, cores, fused=fused, states=states, need_x=need_x)


@_forward.register("cpp")
def _forward_cpp(x, cores, keep_states=False):
    _require_float_dtype(x, "cpp")
    return _planned_forward(x, cores, keep_states, _cpp_kernels(), _cpp_fused_forward)


@_backward.register("cpp")
def _backward_cpp(grad, x, cores, saved=None, need_x=True):
    _require_float_dtype(x, "cpp")
    return _planned_backward(grad, x, cores, saved, _cpp_kernels(), _cpp_fused_backward, need_x)


@functools.lru_cache(maxsize=1024)
def _fused_layout(shapes: tuple, batch: int, itemsize: int, on_gpu: bool) -> tuple[list, int]:
    steps = [(s.count, s.m, s.k, s.n) for s in planner.chain_steps(shapes, "ltr", 1)]
    budget = planner.GPU_TILE_BYTES if on_gpu else planner.CPU_TILE_BYTES
    return steps, planner.fused_tile(shapes, batch, itemsize, cache_bytes=budget, largest=32 if on_gpu else 16)


def _fused_chain(merged, batch: int, itemsize: int):
    """Step matrices, ``(count, m, k, rest)`` per step and the batch tile of the fused ltr chain over ``merged``."""
    steps, tile = _fused_layout(tuple(tuple(c.shape) for c in merged), batch, itemsize, merged[0].is_cuda)
    return [contract.step_matrix(c, "ltr").contiguous() for c in merged], steps, tile


def _fused_threads(steps, batch: int, tile: int) -> int:
    """Threads for one fused call: at most one per batch tile (the kernel's unit of parallel work); one below
    2^17 multiply-adds, where an OpenMP fork/join (and, on a busy machine, waiting for a second core) costs more
    than the work. On the 2-core dev machine two threads already win from two tiles of 150k multiply-adds (256->10
    at batch 256: fwd+bwd of the kernels 98 us instead of 181 us). Results do not depend on it (the kernel's tiles
    and reductions are fixed by the shapes)."""
    macs = batch * sum(count * m * k * rest for count, m, k, rest in steps)
    return 1 if macs < 2**17 else max(1, min(torch.get_num_threads(), -(-batch // tile)))


@functools.lru_cache(maxsize=1024)
def _cpp_fused_config(core_shapes: tuple, groups: tuple, batch: int, itemsize: int, threads: int) -> tuple[int, int]:
    """``(batch tile, threads)`` of a C++ fused call (``threads``: torch's count, part of the cache key)."""
    merged = planner.merged_shapes([s[1] for s in core_shapes], [s[2] for s in core_shapes],
                                   [s[3] for s in core_shapes[:-1]], groups)
    steps, tile = _fused_layout(tuple(merged), batch, itemsize, False)
    return tile, _fused_threads(steps, batch, tile)


def _cpp_fused_call(x, cores, groups):
    """The kernel suffix for x's dtype and the arguments every fused call shares (shapes, groups, tile, threads)."""
    shapes = tuple(tuple(c.shape) for c in cores)
    groups = tuple(groups)
    tile, threads = _cpp_fused_config(shapes, groups, x.shape[0], x.element_size(), torch.get_num_threads())
    suffix = "f32" if x.dtype == torch.float32 else "f64"
    return suffix, shapes, groups, tile, threads


def _cpp_fused_forward(x, cores, groups):
    """``(y, [])``: the ltr chain over ``groups`` of ``cores`` (merged inside the kernel call; nothing is kept for
    the backward, which merges again and recomputes the chain in cache)."""
    suffix, shapes, groups, tile, threads = _cpp_fused_call(x, cores, groups)
    y = x.new_empty(x.shape[0], math.prod(s[2] for s in shapes))
    launch(getattr(_extensions.cpu().mpo, "forward_" + suffix), x, x.shape[0], list(cores), shapes, groups, Out(y),
           tile, threads, dtype=x.dtype)
    return y, []


def _cpp_fused_backward(grad, x, cores, groups, kept=None, need_x=True):
    """``(dx, [d core])`` (``kept``: unused, the forward keeps nothing); without ``need_x`` dx is None and the
    chain's first dIn is skipped."""
    suffix, shapes, groups, tile, threads = _cpp_fused_call(x, cores, groups)
    grad_x = x.new_empty(x.shape) if need_x else None
    grad_cores = [c.new_empty(c.shape) for c in cores]
    launch(getattr(_extensions.cpu().mpo, "backward_" + suffix), grad, x, x.shape[0], list(cores), shapes, groups,
           Out(grad_x), [Out(g) for g in grad_cores], tile, threads, dtype=x.dtype)
    return grad_x, grad_cores


def _triton_merged_forward(x, merged):
    from ..kernels import mpo_triton

    mats, steps, tile = _fused_chain(merged, x.shape[0], x.element_size())
    return mpo_triton.chain_forward(x, mats, steps, tile=max(tile, 16))


_triton_fused_forward = contract.forward_on_merged_cores(_triton_merged_forward)


@_forward.register("triton")
def _forward_triton(x, cores, keep_states=False):
    if x.dtype != torch.float32:
        raise TypeError(f"the triton backend of mpo_linear runs in float32, got x of dtype {x.dtype}")
    # The Triton kernel covers the forward chain; with autograd the gemm plans run (their backward needs states).
    kernels = ("gemm",) if keep_states else ("gemm", "fused")
    return _planned_forward(x, cores, keep_states, kernels, _triton_fused_forward)


@_backward.register("triton")
def _backward_triton(grad, x, cores, saved=None, need_x=True):
    return _planned_backward(grad, x, cores, saved, ("gemm",), None, need_x)


def _cuda_chain_buffers(x, merged):
    """Flattened step matrices, the int64 step table, tile, state sizes of the CUDA fused chain."""
    mats, steps, tile = _fused_chain(merged, x.shape[0], x.element_size())
    offsets = [0]
    for a in mats[:-1]:
        offsets.append(offsets[-1] + a.numel())
    flat = torch.cat([a.reshape(-1) for a in mats])
    rows = tuple((*st, off) for st, off in zip(steps, offsets))
    table = device_constant(("mpo_steps", rows), x.device, lambda: torch.tensor(rows, dtype=torch.int64))
    sizes = [c * k * r for c, _, k, r in steps] + [x.shape[1], steps[-1][0] * steps[-1][1] * steps[-1][3]]
    return mats, flat, table, steps, tile, max(sizes) * tile


def _cuda_merged_forward(x, merged):
    mats, flat, table, steps, tile, half = _cuda_chain_buffers(x, merged)
    y = x.new_empty(x.shape[0], math.prod(c.shape[2] for c in merged))
    n_tiles = -(-x.shape[0] // tile)
    use_shared = 2 * half * x.element_size() <= 48 * 1024
    scratch = x.new_empty(0 if use_shared else n_tiles * 2 * half)
    module = _extensions.cuda().mpo
    kernel = module.forward_f32 if x.dtype == torch.float32 else module.forward_f64
    launch(kernel, x, Out(y), flat, table, len(steps), x.shape[0], x.shape[1], y.shape[1], half, tile, Out(scratch),
           use_shared, torch.cuda.current_stream(x.device).cuda_stream, dtype=x.dtype)
    return y


def _cuda_merged_backward(grad, x, merged, need_x=True):
    """``(dx, d merged)``; the CUDA kernel always forms dx (returned as None without ``need_x``)."""
    mats, flat, table, steps, tile, half = _cuda_chain_buffers(x, merged)
    n_tiles = -(-x.shape[0] // tile)
    state_total = sum(c * k * r for c, _, k, r in steps) * tile
    mat_total = flat.numel()
    scratch = x.new_empty(n_tiles * (state_total + 2 * half))
    partials = x.new_empty(n_tiles * mat_total)
    grad_x, grad_flat = x.new_empty(x.shape), flat.new_empty(flat.shape)
    module = _extensions.cuda().mpo
    kernel = module.backward_f32 if x.dtype == torch.float32 else module.backward_f64
    launch(kernel, grad, x, Out(grad_x), flat, Out(grad_flat), table, len(steps), x.shape[0], x.shape[1],
           grad.shape[1], half, state_total, mat_total, tile, Out(scratch), Out(partials),
           torch.cuda.current_stream(x.device).cuda_stream, dtype=x.dtype)
    grads = torch.split(grad_flat, [a.numel() for a in mats])
    return grad_x if need_x else None, [contract.matrix_grad_to_core(g.view(a.shape), c.shape, "ltr")
                    for g, a, c in zip(grads, mats, merged)]


_cuda_fused_forward = contract.forward_on_merged_cores(_cuda_merged_forward)
_cuda_fused_backward = contract.backward_on_merged_cores(_cuda_merged_backward)


@_forward.register("cuda")
def _forward_cuda(x, cores, keep_states=False):
    _require_float_dtype(x, "cuda")
    return _planned_forward(x, cores, keep_states, ("gemm", "fused"), _cuda_fused_forward)


@_backward.register("cuda")
def _backward_cuda(grad, x, cores, saved=None, need_x=True):
    _require_float_dtype(x, "cuda")
    return _planned_backward(grad, x, cores, saved, ("gemm", "fused"), _cuda_fused_backward, need_x)


# ----------------------------------------------------------------------------------------------------------------
# Custom ops
# ----------------------------------------------------------------------------------------------------------------
def _forward_impl(x, cores, bias):
    y = _forward.get(x.device)(x.contiguous(), [c.contiguous() for c in cores])
    return y if bias is None else y.add_(bias)


def _backward_impl(grad, x, cores):
    grads = _backward.get(x.device)(grad.contiguous(), x.contiguous(), [c.contiguous() for c in cores])
    return [g.contiguous() for g in grads]


@torch.library.custom_op("physkernels::mpo_linear", mutates_args=())
def _mpo_linear(x: torch.Tensor, cores: list[torch.Tensor], bias: Optional[torch.Tensor]) -> torch.Tensor:
    return _forward_impl(x, cores, bias)


@_mpo_linear.register_fake
def _(x, cores, bias):
    return x.new_empty(x.shape[0], math.prod(c.shape[2] for c in cores))


@torch.library.custom_op("physkernels::mpo_linear_backward", mutates_args=())
def _mpo_linear_backward(grad: torch.Tensor, x: torch.Tensor, cores: list[torch.Tensor]) -> list[torch.Tensor]:
    return _backward_impl(grad, x, cores)


@_mpo_linear_backward.register_fake
def _(grad, x, cores):
    return [torch.empty_like(x)] + [torch.empty_like(c) for c in cores]


def _differentiable_backward(grad, x, cores):
    """``[dx, *d cores]`` from plain torch ops (the reference's VJP): the backward when autograd records it."""
    return differentiable_vjp(lambda x, *cores: reference_mpo_linear(x, cores), (x, *cores), grad)


def _setup_context(ctx, inputs, output):
    x, cores, bias = inputs
    ctx.save_for_backward(x, *cores)
    ctx.has_bias = bias is not None


def _backward_fn(ctx, grad):
    x, *cores = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True
        grads = _differentiable_backward(grad, x, cores)
    else:
        grads = _mpo_linear_backward(grad, x, cores)
    grad_bias = grad.sum(0) if ctx.has_bias else None
    return grads[0], list(grads[1:]), grad_bias


_mpo_linear.register_autograd(_backward_fn, setup_context=_setup_context)


class _EagerMPOLinear(torch.autograd.Function):
    """Eager-mode twin of the custom op: the same backend implementations, without the custom-op dispatch layers
    (about 0.1-0.3 ms per forward+backward on a 2-core CPU, more than a small layer's whole GEMM), and the chain's
    forward states kept for the backward instead of recomputed (the planner's ``training`` objective).
    ``torch.compile`` traces the custom op instead (see :func:`mpo_linear`)."""

    @staticmethod
    def forward(ctx, x, bias, *cores):
        ctx.backend = _forward.resolve(x.device)
        y, (plan, states) = _forward.get(x.device, ctx.backend)(x.contiguous(), [c.contiguous() for c in cores],
                                                                 keep_states=True)
        ctx.save_for_backward(x, *cores, *states)  # the inputs themselves: a double backward differentiates them
        ctx.plan, ctx.n_cores, ctx.has_bias = plan, len(cores), bias is not None
        return y if bias is None else y.add_(bias)

    @staticmethod
    def backward(ctx, grad):
        x, *rest = ctx.saved_tensors
        cores, states = rest[:ctx.n_cores], rest[ctx.n_cores:]
        if torch.is_grad_enabled():  # create_graph=True: a backward autograd can differentiate again
            grads = _differentiable_backward(grad, x, cores)
        else:
            saved = None if ctx.plan is None else (ctx.plan, states)
            grads = _backward.get(x.device, ctx.backend)(grad.contiguous(), x.contiguous(),
                                                         [c.contiguous() for c in cores], saved,
                                                         ctx.needs_input_grad[0])
        grad_bias = grad.sum(0) if ctx.has_bias else None
        return (grads[0], grad_bias, *grads[1:])


def mpo_linear(x: torch.Tensor, cores: Sequence[torch.Tensor], bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ W^T + bias`` where W (prod J, prod I) is the MPO of ``cores`` (Eq. 5); x has shape ``(..., prod I)``.

    Differentiable in x, every core and bias, also twice: with ``create_graph=True`` the backward is the
    reference's VJP in plain torch (the planned kernels serve first-order gradients). Raises ValueError/TypeError
    naming the argument on bad input. Runs the custom op ``torch.ops.physkernels.mpo_linear`` under
    ``torch.compile``, export, fake tensors and dispatch modes; in plain eager mode it calls the same kernels
    through a lighter ``autograd.Function`` (with gradients) or directly (inference; see
    :mod:`physkernels.ops._eager`). Inside ``torch.func`` transforms and for an empty batch it evaluates
    :func:`reference_mpo_linear`.
    """
    _validate(x, cores, bias)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, bias, *cores))
    if reference_path((x2, bias, *cores)):
        y = reference_mpo_linear(x2, cores, bias)
    elif not plain_eager_call((x, bias, *cores)):
        y = _mpo_linear(x2, list(cores), bias)
    elif needs_grad:
        y = _EagerMPOLinear.apply(x2, bias, *cores)
    else:  # eager inference: the planned kernels directly, without the dispatch layers
        y = _forward_impl(x2, cores, bias)
    return y.reshape(*lead, y.shape[-1])
