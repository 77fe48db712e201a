"""Which path an op call takes: the custom op, a lighter ``torch.autograd.Function`` over the same backend kernels,
the kernels directly, or the plain-torch reference formula (``torch.func`` transforms, empty batches, and the
differentiable backward of double backward).

The custom ops (``torch.ops.physkernels.*``) are what ``torch.compile``, ``torch.export``, fake-tensor tracing and
``torch.library.opcheck`` see; in plain eager mode their dispatch layers cost as much as a small layer's whole
kernel time, so the ops call the same backend implementations through a lighter ``autograd.Function`` whenever
nothing is tracing them, and for inference directly (:mod:`physkernels.ops._builder`; the cost of each path:
docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)  # torch < 2.5 exports through dynamo only


def plain_eager_call(tensors) -> bool:
    """True when the kernels can be called directly: no compiler or exporter tracing, no dispatch mode (fake or
    proxy tensors, opcheck's checks) and only plain tensors and parameters (no tensor subclasses)."""
    return (not torch.compiler.is_compiling() and not _is_exporting()
            and _get_current_dispatch_mode() is None
            and all(t is None or type(t) in _PLAIN_TENSOR_TYPES for t in tensors))


def functorch_active() -> bool:
    """True inside a ``torch.func`` transform (``grad``, ``vjp``, ``jacrev``, ``vmap``, ...). The compiled kernels
    take raw pointers and cannot see through functorch's wrapped tensors, so the ops then evaluate their
    reference formula (plain torch, which every transform composes with)."""
    if torch.compiler.is_compiling():  # dynamo cannot trace the interpreter stack; it traces the custom op
        return False
    return torch._C._functorch.peek_interpreter_stack() is not None


def reference_path(tensors) -> bool:
    """Whether a call must run the op's plain-torch reference formula instead of a backend: inside a
    ``torch.func`` transform, or for an empty batch (``tensors[0]`` is the input; nothing to compute, and the
    reference gives the correctly shaped empty result and zero gradients)."""
    return functorch_active() or tensors[0].numel() == 0


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype ``torch.autocast`` asks for on ``x``'s device while it is enabled there, else None."""
    device_type = x.device.type
    available = getattr(torch.amp, "is_autocast_available", None)
    if (available is not None and not available(device_type)) or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def differentiable_vjp(function, tensors, grad):
    """The gradients of ``function(*tensors)`` for the cotangent ``grad``, built from plain torch ops by
    ``torch.func.vjp`` so that they are themselves differentiable: the backward the ops run when autograd records
    it (``create_graph=True``: double backward, Hessian-vector products, gradient penalties). ``None`` entries of
    ``tensors`` are passed to ``function`` as None and get None back."""
    present = [t for t in tensors if t is not None]

    def call(*given):
        it = iter(given)
        return function(*(next(it) if t is not None else None for t in tensors))

    _, pullback = torch.func.vjp(call, *present)
    grads = iter(pullback(grad))
    return [next(grads) if t is not None else None for t in tensors]
