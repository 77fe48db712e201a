"""Backend selection: ``reference`` (plain torch), ``cpp`` (physkernels._C), ``triton``, ``cuda`` (_C_cuda).

The process default is ``set_backend(name)`` or the ``PHYSKERNELS_BACKEND`` environment variable (default
``auto``); the ``use_backend(name)`` context manager overrides it for the current thread or asyncio task only
(a ``contextvars`` variable), so contexts in different threads neither see nor undo each other. ``auto`` asks
each op for its fastest implementation available on the tensor's device. Each op owns an :class:`OpDispatcher`
that maps backend names to implementations; asking for a backend that is not installed or that the op lacks raises
:class:`BackendUnavailableError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
from typing import Callable, Iterator

import torch

from . import _extensions

BACKENDS = ("reference", "cpp", "triton", "cuda")
_CHOICES = ("auto",) + BACKENDS


class BackendUnavailableError(RuntimeError):
    """The requested backend is not installed, cannot run on this device, or does not implement the op."""


def _validate(name: str) -> str:
    if not isinstance(name, str) or name not in _CHOICES:
        raise ValueError(f"backend must be one of {_CHOICES}, got {name!r}")
    return name


_default = _validate(os.environ.get("PHYSKERNELS_BACKEND", "auto"))
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("physkernels_backend", default=None)


def set_backend(name: str) -> None:
    """Set the process-wide default backend of every physkernels op (``auto``, ``reference``, ``cpp``,
    ``triton``, ``cuda``). A :func:`use_backend` context active in the calling thread still takes precedence."""
    global _default
    _default = _validate(name)


def get_backend() -> str:
    """The backend in effect here: the innermost :func:`use_backend` of this thread/task, else the default."""
    override = _override.get()
    return _default if override is None else override


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run the enclosed ops with backend ``name`` in this thread (or asyncio task) only, then
    restore what was in effect before. Other threads keep the process default."""
    token = _override.set(_validate(name))
    try:
        yield
    finally:
        _override.reset(token)


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreted() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def why_unavailable(backend: str, device: torch.device | str = "cpu") -> str | None:
    """None when ``backend`` can run on ``device``; otherwise the reason."""
    device = torch.device(device)
    if backend == "reference":
        return None
    if backend == "cpp":
        if device.type != "cpu":
            return f"the cpp backend runs on CPU tensors, got device {device}"
        return None if _extensions.load("_C") else f"physkernels._C failed to import: {_extensions.load_error('_C')}"
    if backend == "triton":
        if not _triton_importable():
            return "triton is not installed (pip install triton)"
        if device.type == "cuda" or (device.type == "cpu" and triton_interpreted()):
            return None
        return f"triton needs a CUDA device or TRITON_INTERPRET=1 for CPU tensors, got device {device}"
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend runs on CUDA tensors, got device {device}"
        if _extensions.load("_C_cuda") is None:
            return f"physkernels._C_cuda is not available: {_extensions.load_error('_C_cuda') or 'not built'}"
        return None
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on ``device`` in this process."""
    return [b for b in BACKENDS if why_unavailable(b, device) is None]


_DISPATCHERS: dict[str, "OpDispatcher"] = {}


def dispatchers() -> dict[str, "OpDispatcher"]:
    """Every :class:`OpDispatcher` created so far (those of the imported op and physics modules), by op name."""
    return dict(_DISPATCHERS)


class OpDispatcher:
    """Maps backend names to one op's implementations and picks one per call.

    ``auto_order`` lists, per device type, the backends to try in order of speed for ``auto``; a key
    ``"<device type>:<dtype>"`` (e.g. ``"cuda:float64"``) overrides it for that dtype. An implementation is
    registered with :meth:`register` (a decorator) or :meth:`register_module` (a module imported on first use, for
    backends whose module needs an optional package such as triton)::

        dispatch = OpDispatcher("mpo_linear", auto_order={"cpu": ("cpp", "reference")})

        @dispatch.register("cpp", supports=lambda x, cores: None if x.dtype in FLOATS else "float32/64 only")
        def _forward_cpp(x, cores): ...

    Two optional hooks see the call's arguments: ``supports(*args) -> str | None`` declines a call the backend
    cannot run (the reason: patch too large, unsupported dtype or order); ``auto`` passes over it and an explicit
    choice raises :class:`BackendUnavailableError` with the reason. ``prefers(*args) -> bool`` (False: ``auto``
    passes over the backend for this call, an explicit choice still runs it) encodes a measured crossover where a
    later backend in ``auto_order`` is faster. A module registered with :meth:`register_module` provides them as
    module-level functions ``supports`` and ``prefers``.
    """

    def __init__(self, op_name: str, auto_order: dict[str, tuple[str, ...]]):
        self.op_name = op_name
        self.auto_order = auto_order
        self._impls: dict[str, Callable] = {}
        self._modules: dict[str, str] = {}
        self._supports: dict[str, Callable] = {}
        self._prefers: dict[str, Callable] = {}
        _DISPATCHERS[op_name] = self

    def register(self, backend: str, supports: Callable | None = None,
                 prefers: Callable | None = None) -> Callable[[Callable], Callable]:
        _check_backend_name(backend)

        def decorator(fn: Callable) -> Callable:
            self._impls[backend] = fn
            if supports is not None:
                self._supports[backend] = supports
            if prefers is not None:
                self._prefers[backend] = prefers
            return fn

        return decorator

    def register_module(self, backend: str, module: str) -> None:
        """Register the module named ``module`` (absolute import path) as ``backend``'s implementation: the
        dispatcher imports it when the backend is first resolved and hands out the module itself."""
        _check_backend_name(backend)
        self._modules[backend] = module

    def get_impl(self, backend: str):
        """The implementation registered for ``backend`` (KeyError when the op has none)."""
        if backend not in self._impls and backend in self._modules:
            module = importlib.import_module(self._modules[backend])
            self._impls[backend] = module
            for name, hooks in (("supports", self._supports), ("prefers", self._prefers)):
                if hasattr(module, name):
                    hooks[backend] = getattr(module, name)
        return self._impls[backend]

    def source(self, backend: str) -> str:
        """The module that implements ``backend`` (its name; the module is not imported)."""
        if backend in self._modules:
            return self._modules[backend]
        return getattr(self._impls[backend], "__module__", "")

    @property
    def implemented(self) -> tuple[str, ...]:
        return tuple(b for b in BACKENDS if b in self._impls or b in self._modules)

    def why_declined(self, backend: str, device: torch.device | str, call: tuple | None = None) -> str | None:
        """None when ``backend`` is implemented, can run on ``device`` and accepts the call's arguments ``call``
        (not checked when None); otherwise the reason."""
        if backend not in self.implemented:
            return f"{self.op_name} has no {backend!r} implementation; it implements {self.implemented}"
        reason = why_unavailable(backend, device)
        if reason is None and call is not None:
            self.get_impl(backend)  # a lazily registered module brings its hooks on import
            supports = self._supports.get(backend)
            reason = supports(*call) if supports is not None else None
        return reason

    def resolve(self, device: torch.device | str, backend: str | None = None, dtype: torch.dtype | None = None,
                call: tuple | None = None) -> str:
        """The backend that will run on ``device`` for tensors of ``dtype`` and, when given, the arguments ``call``
        (``backend`` overrides the process-wide choice). ``auto`` takes the first backend of ``auto_order`` that
        can run the call and prefers it, else ``reference``."""
        device = torch.device(device)
        choice = _validate(backend) if backend is not None else get_backend()
        if choice == "auto":
            order = self.auto_order.get(device.type, ("reference",))
            if dtype is not None:
                order = self.auto_order.get(f"{device.type}:{str(dtype).removeprefix('torch.')}", order)
            for candidate in order:
                if self.why_declined(candidate, device, call) is None:
                    prefers = self._prefers.get(candidate)
                    if call is None or prefers is None or prefers(*call):
                        return candidate
            return "reference"
        reason = self.why_declined(choice, device, call)
        if reason is not None:
            raise BackendUnavailableError(f"{self.op_name}: backend {choice!r} cannot run this call: {reason}")
        return choice

    def get(self, device: torch.device | str, backend: str | None = None, dtype: torch.dtype | None = None,
            call: tuple | None = None):
        """The implementation :meth:`resolve` picks."""
        return self.get_impl(self.resolve(device, backend, dtype, call))


def _check_backend_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
