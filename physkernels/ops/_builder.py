"""One op from its parts: :class:`KernelOp` turns an op's schema, reference formula, fake and backend modules into
the ``torch.library`` custom ops (forward and backward), their autograd registration and the eager fast path.

An op states only what differs between ops::

    op = KernelOp("taylor_linear", "(Tensor x, Tensor weight, Tensor? bias, int order) -> Tensor",
                  reference=reference_taylor_linear, fake=lambda x, weight, bias, order: ...,
                  backends={"cpp": "physkernels.ops.taylor_linear.cpp_backend", ...},
                  auto_order={"cpu": ("cpp", "reference"), "cuda": ("triton", "cuda", "reference")})
    y = op(x, weight, bias, order)   # after the public function has validated the arguments

**Backend modules.** Each backend is a module (imported on first use, so a missing optional package such as triton
only matters when that backend is chosen) with

* ``forward(*args) -> Tensor``: the op's arguments in schema order (list arguments may arrive as tuples);
* ``backward(grad, needs, *args, kept=None) -> tuple``: one entry per argument, the gradient of a tensor argument
  (a list of gradients for a ``Tensor[]`` argument), None for the others; ``needs[i]`` says whether argument i
  needs its gradient (a backend may skip work for the others; what it returns for them is discarded);
* optionally ``forward_keep(*args) -> (Tensor, kept)``: a forward that keeps intermediate results for the eager
  backward (passed back as ``kept``); ``supports(*args) -> str | None`` and ``prefers(*args) -> bool``
  (:class:`~physkernels.backends.OpDispatcher`'s hooks: decline a call the backend cannot run; pass over it in
  ``auto`` where another backend is measured faster).

The ``reference`` backend is the reference formula itself, its backward the formula's vector-Jacobian product.

**Paths of a call** (:meth:`KernelOp.__call__`): the reference formula inside ``torch.func`` transforms and for an
empty batch; the custom op ``torch.ops.physkernels.<name>`` under ``torch.compile``, export, fake tensors and
dispatch modes; otherwise (plain eager) a ``torch.autograd.Function`` over the same backend modules when a gradient
is needed (its dispatch costs a fraction of the custom op's), and the backend's forward directly for inference.
With ``create_graph=True`` the backward is the reference's VJP in plain torch, so second derivatives work.
"""

from __future__ import annotations

import re
import types
from typing import Callable

import torch

from ..backends import BackendUnavailableError, OpDispatcher, get_backend
from ._eager import autocast_dtype, differentiable_vjp, plain_eager_call, reference_path

_TENSOR, _OPTIONAL, _LIST, _OTHER = "Tensor", "Tensor?", "Tensor[]", "other"
KERNEL_DTYPES = (torch.float32, torch.float64)  # what the compiled backends run; other dtypes run the reference
OP_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # what the ops accept


def _argument_kinds(schema: str) -> tuple[str, ...]:
    """The kind of each argument of ``schema`` ``"(Type name, ...) -> Ret"``: Tensor, Tensor?, Tensor[] or other."""
    inside = re.fullmatch(r"\s*\((.*)\)\s*->.*", schema, flags=re.S)
    if inside is None:
        raise ValueError(f"schema must look like '(Type name, ...) -> Type', got {schema!r}")
    kinds = []
    for argument in inside.group(1).split(","):
        type_name = argument.split()[0]
        kinds.append(type_name if type_name in (_TENSOR, _OPTIONAL, _LIST) else _OTHER)
    return tuple(kinds)


class KernelOp:
    """An op assembled from its schema, reference, fake and backend modules (see the module docstring).

    Attributes: ``name``; ``dispatcher`` (:class:`OpDispatcher` ``name``: ``reference`` plus the backend modules);
    ``title`` (the layer's name, e.g. ``CG2d``: the eager path's autograd node is ``_Eager<title>Backward``);
    ``custom_op`` and ``backward_op`` (``torch.ops.physkernels.<name>`` and ``<name>_backward``, which takes
    ``(grad, needs, *args)`` and returns one tensor per tensor argument, empty where no gradient is needed).
    """

    def __init__(self, name: str, schema: str, *, title: str, reference: Callable, fake: Callable,
                 backends: dict[str, str], auto_order: dict[str, tuple[str, ...]]):
        self.name, self.title = name, title
        self.reference = reference
        self.kinds = _argument_kinds(schema)
        self.dispatcher = OpDispatcher(name, auto_order=auto_order)
        self.dispatcher.register("reference")(types.SimpleNamespace(
            forward=reference, backward=self._reference_backward, __name__=f"{name}.reference"))
        for backend, module in backends.items():
            self.dispatcher.register_module(backend, module)

        self.custom_op = torch.library.custom_op(f"physkernels::{name}", self._custom_forward, mutates_args=(),
                                                 schema=schema)
        self.custom_op.register_fake(fake)
        arguments = schema[schema.index("(") + 1: schema.rindex(")")]
        self.backward_op = torch.library.custom_op(
            f"physkernels::{name}_backward", self._custom_backward, mutates_args=(),
            schema=f"(Tensor grad, bool[] needs, {arguments}) -> Tensor[]")
        self.backward_op.register_fake(self._fake_backward)
        self.custom_op.register_autograd(self._autograd_backward, setup_context=self._setup_context)
        self._eager = _eager_function(self)

    # -- arguments ----------------------------------------------------------------------------------------------
    def tensors(self, args) -> list:
        """The tensor arguments in order, ``Tensor[]`` arguments expanded, absent optional ones as None."""
        found = []
        for kind, arg in zip(self.kinds, args):
            if kind == _LIST:
                found.extend(arg)
            elif kind != _OTHER:
                found.append(arg)
        return found

    def skeleton(self, args) -> list:
        """``args`` without its tensors (None in their places, a list of Nones per ``Tensor[]``): what a backward
        keeps besides the saved tensors; :meth:`_rebuild` puts the tensors back."""
        return [[None] * len(arg) if kind == _LIST else None if kind != _OTHER else arg
                for kind, arg in zip(self.kinds, args)]

    def _rebuild(self, args, tensors) -> list:
        """``args`` with its tensor arguments replaced, in order, by ``tensors`` (the layout of :meth:`tensors`)."""
        it = iter(tensors)
        rebuilt = []
        for kind, arg in zip(self.kinds, args):
            if kind == _LIST:
                rebuilt.append([next(it) for _ in arg])
            elif kind != _OTHER:
                rebuilt.append(next(it))
            else:
                rebuilt.append(arg)
        return rebuilt

    def _needs(self, args, requires) -> list:
        """Per argument: whether its gradient is needed (one bool; any element for a list), from ``requires``, a
        bool per tensor in :meth:`tensors` order."""
        it = iter(requires)
        needs = []
        for kind, arg in zip(self.kinds, args):
            if kind == _LIST:
                needs.append(any([next(it) for _ in arg]))
            elif kind != _OTHER:
                needs.append(bool(next(it)) and arg is not None)
            else:
                needs.append(False)
        return needs

    def _flat_grads(self, args, needs, grads) -> list:
        """A backend's per-argument gradients as the backward op's flat tensor list (empty where not needed)."""
        x = self.tensors(args)[0]
        flat = []
        for kind, arg, need, grad in zip(self.kinds, args, needs, grads):
            if kind == _LIST:
                flat.extend(g.contiguous() if need else x.new_empty(0) for g in (grad if need else arg))
            elif kind != _OTHER:
                flat.append(grad.contiguous() if need and grad is not None else x.new_empty(0))
        return flat

    def _per_argument(self, args, needs, grads) -> list:
        """Gradients as autograd wants them: one per argument, None where not needed (lists per element)."""
        result = []
        for kind, arg, need, grad in zip(self.kinds, args, needs, grads):
            if kind == _LIST:
                result.append(list(grad) if need else [None] * len(arg))
            else:
                result.append(grad if need and kind != _OTHER else None)
        return result

    def autocast(self, *args) -> list:
        """``args`` as ``torch.autocast`` runs them: under autocast on the input's device every float32 / float16 /
        bfloat16 tensor argument cast to the autocast dtype (float64 ones stay, as torch's lower-precision ops such
        as ``F.linear`` leave them); ``args`` unchanged otherwise. The casts are differentiable, so gradients reach
        the original tensors in their own dtype. Malformed arguments pass through for validation to report."""
        x = args[0]
        dtype = autocast_dtype(x) if isinstance(x, torch.Tensor) else None
        if dtype is None:
            return list(args)

        def cast(t):
            return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64 \
                else t

        return [[cast(t) for t in arg] if kind == _LIST and isinstance(arg, (list, tuple))
                else cast(arg) if kind != _OTHER else arg for kind, arg in zip(self.kinds, args)]

    # -- backends -----------------------------------------------------------------------------------------------
    def resolve(self, args, backend: str | None = None) -> str:
        """The backend that runs ``args`` (``backend`` overrides the process-wide choice). The compiled backends
        run :data:`KERNEL_DTYPES`; a call in another floating dtype (bfloat16 / float16, e.g. under autocast) runs
        the reference, and naming a compiled backend for it raises :class:`BackendUnavailableError`."""
        x = self.tensors(args)[0]
        if x.dtype not in KERNEL_DTYPES:
            choice = backend if backend is not None else get_backend()
            if choice not in ("auto", "reference"):
                raise BackendUnavailableError(
                    f"{self.name}: backend {choice!r} cannot run this call: the compiled kernels run float32 and "
                    f"float64, got {x.dtype} (the 'reference' backend runs it; 'auto' picks it)")
            return "reference"
        return self.dispatcher.resolve(x.device, backend, dtype=x.dtype, call=tuple(args))

    def backend(self, name: str):
        return self.dispatcher.get_impl(name)

    def _reference_backward(self, grad, needs, *args, kept=None):
        tensors = self.tensors(args)
        grads = differentiable_vjp(lambda *t: self.reference(*self._rebuild(args, t)), tensors, grad)
        return self._rebuild(args, grads)

    def differentiable_backward(self, grad, args) -> list:
        """Per-argument gradients built from plain torch ops: the backward when autograd records it."""
        return self._reference_backward(grad, None, *args)

    # -- custom ops ---------------------------------------------------------------------------------------------
    def _custom_forward(self, *args):
        return self.backend(self.resolve(args)).forward(*args).contiguous()

    def _custom_backward(self, grad, needs, *args):
        grads = self.backend(self.resolve(args)).backward(grad, tuple(needs), *args)
        return self._flat_grads(args, needs, grads)

    def _fake_backward(self, grad, needs, *args):
        like = [t.new_empty(t.shape) if t is not None else None for t in self.tensors(args)]
        return self._flat_grads(args, needs, self._rebuild(args, like))

    def _setup_context(self, ctx, inputs, output):
        ctx.save_for_backward(*self.tensors(inputs))
        ctx.skeleton = self.skeleton(inputs)

    def _autograd_backward(self, ctx, grad):
        args = self._rebuild(ctx.skeleton, ctx.saved_tensors)
        requires = []
        for kind, flag in zip(self.kinds, ctx.needs_input_grad):
            if kind == _LIST:
                requires.extend(flag)
            elif kind != _OTHER:
                requires.append(flag)
        needs = self._needs(args, requires)
        if torch.is_grad_enabled():  # create_graph=True
            grads = self.differentiable_backward(grad, args)
        else:
            flat = iter(self.backward_op(grad, needs, *args))
            grads = self._rebuild(args, [next(flat) for _ in self.tensors(args)])
        return tuple(self._per_argument(args, needs, grads))

    # -- the call -----------------------------------------------------------------------------------------------
    def __call__(self, *args):
        """Run the op on validated arguments by the path that fits the call (see the module docstring)."""
        tensors = self.tensors(args)
        if reference_path(tensors):
            return self.reference(*args)
        if not plain_eager_call(tensors):
            return self.custom_op(*(list(a) if isinstance(a, tuple) else a for a in args))
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
            return self._eager.apply(args, *tensors)
        return self.backend(self.resolve(args)).forward(*args)  # eager inference: no dispatch layers


def _eager_function(op: KernelOp) -> type:
    """The plain ``autograd.Function`` of ``op``'s eager path: the backend is resolved once in its forward and its
    backward runs the same backend (``apply(args, *tensors)``: the tensors of ``args`` passed again, flat, so that
    autograd sees the tensors inside list arguments)."""

    def forward(ctx, args, *tensors):
        args = op._rebuild(args, tensors)
        ctx.backend = op.resolve(args)
        impl = op.backend(ctx.backend)
        keep = getattr(impl, "forward_keep", None)
        y, ctx.kept = keep(*args) if keep is not None else (impl.forward(*args), None)
        ctx.save_for_backward(*tensors)
        ctx.skeleton = op.skeleton(args)
        return y

    def backward(ctx, grad):
        args = op._rebuild(ctx.skeleton, ctx.saved_tensors)
        needs = op._needs(args, ctx.needs_input_grad[1:])
        if torch.is_grad_enabled():  # create_graph=True: a backward autograd can differentiate again
            grads = op.differentiable_backward(grad, args)
        else:
            grads = op.backend(ctx.backend).backward(grad, tuple(needs), *args, kept=ctx.kept)
        flat = op.tensors(op._per_argument(args, needs, grads))
        return (None, *flat)

    return type(f"_Eager{op.title}", (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward),
                 "__doc__": f"Eager-mode twin of the custom op physkernels::{op.name} (see ops/_builder.py)."})
