"""Handing tensors to the compiled kernels, whose bindings take raw data pointers.

A binding reads an input as a dense row-major array at its data pointer, so every tensor argument must be
contiguous, of the kernel's dtype and on the kernel's device, and must stay alive until the call returns (a
``t.contiguous().data_ptr()`` temporary is freed before the kernel runs). :func:`launch` is the one place that
turns tensors into pointers:

* a plain tensor is an **input**: made contiguous (a copy when it is a strided, expanded or offset view), held for
  the duration of the call, and passed as its data pointer;
* ``Out(t)`` is an **output** the kernel writes: it must already be contiguous (a copy would drop the results);
* ``Strided(t)`` is an input whose strides the kernel receives separately: passed as it is, without a copy;
* ``None`` is an absent optional tensor: passed as the null pointer 0;
* a list or tuple of tensors becomes a list of pointers (each element handled as above);
* anything else (ints, floats, a CUDA stream handle) is passed unchanged.

Floating-point tensors must have ``dtype`` when it is given; every tensor must be on the first tensor's
device. A violation is a programming error inside physkernels, reported as ``TypeError`` /
``ValueError`` before the kernel runs.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import torch

_CONSTANTS: dict[tuple, torch.Tensor] = {}

__all__ = ["launch", "Out", "Strided", "device_constant"]


class Out:
    """An output tensor the kernel writes through its data pointer; must be contiguous."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor | None):
        self.tensor = tensor


class Strided:
    """An input passed without a copy: the kernel receives its strides as separate arguments."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class _Marshal:
    def __init__(self, dtype: torch.dtype | None):
        self.dtype, self.device = dtype, None
        self.held: list[torch.Tensor] = []

    def _check(self, t: torch.Tensor, role: str, position: str) -> None:
        if self.device is None:
            self.device = t.device
        elif t.device != self.device:
            raise ValueError(f"kernel {role} {position} is on {t.device}, expected {self.device}")
        if self.dtype is not None and t.is_floating_point() and t.dtype != self.dtype:
            raise TypeError(f"kernel {role} {position} has dtype {t.dtype}, expected {self.dtype}")

    def convert(self, arg: Any, position: str) -> Any:
        if arg is None:
            return 0
        if isinstance(arg, Out):
            t = arg.tensor
            if t is None:
                return 0
            self._check(t, "output", position)
            if not t.is_contiguous():
                raise ValueError(f"kernel output {position} must be contiguous, got strides {t.stride()}")
            return t.data_ptr()
        if isinstance(arg, Strided):
            self._check(arg.tensor, "input", position)
            return arg.tensor.data_ptr()
        if isinstance(arg, torch.Tensor):
            self._check(arg, "input", position)
            t = arg.contiguous()
            self.held.append(t)
            return t.data_ptr()
        if isinstance(arg, (list, tuple)) and any(isinstance(a, (torch.Tensor, Out, Strided)) for a in arg):
            return [self.convert(a, f"{position}[{k}]") for k, a in enumerate(arg)]
        return arg


def launch(kernel: Callable, *args: Any, dtype: torch.dtype | None = None) -> Any:
    """Call ``kernel(*args)`` with every tensor argument replaced by a data pointer (see the module docstring)."""
    marshal = _Marshal(dtype)
    pointers = [marshal.convert(a, f"argument {k}") for k, a in enumerate(args)]
    return kernel(*pointers)


_SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}


def typed_kernel(module: Any, name: str, dtype: torch.dtype) -> Callable:
    """The binding ``<name>_f32`` or ``<name>_f64`` of ``module`` for ``dtype`` (every compiled kernel that
    templates on float/double is exposed under these two names)."""
    if dtype not in _SUFFIXES:
        raise TypeError(f"the compiled kernels run float32 and float64, got {dtype}")
    return getattr(module, f"{name}_{_SUFFIXES[dtype]}")


def device_constant(key: Hashable, device: torch.device, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A small read-only index table on ``device``, built by ``build()`` (on the CPU) and copied there once per
    ``(key, device)``. Kernel calls then never copy from the host: no host-device transfer inside an op (which
    CUDA-graph capture forbids) and no per-call synchronisation."""
    full_key = (key, str(torch.device(device)))
    table = _CONSTANTS.get(full_key)
    if table is None:
        if len(_CONSTANTS) > 4096:
            _CONSTANTS.clear()
        table = _CONSTANTS[full_key] = build().to(device)
    return table
