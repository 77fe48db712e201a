"""Load the compiled modules once, remembering why one is missing (so errors can say so)."""

from __future__ import annotations

import importlib
from types import ModuleType

_loaded: dict[str, ModuleType | None] = {}
_errors: dict[str, str] = {}


def load(name: str) -> ModuleType | None:
    """Return ``physkernels.<name>`` (``_C`` or ``_C_cuda``), or None when it is not built/importable."""
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f"physkernels.{name}")
        except ImportError as exc:  # not built, or built for another platform
            _loaded[name] = None
            _errors[name] = str(exc)
    return _loaded[name]


def load_error(name: str) -> str:
    load(name)
    return _errors.get(name, "")


def cpu() -> ModuleType:
    """The C++ module; raises a clear error when the package was installed without it."""
    module = load("_C")
    if module is None:
        raise RuntimeError(f"physkernels._C is not available ({load_error('_C')}); reinstall with `pip install .`")
    return module


def cuda() -> ModuleType:
    module = load("_C_cuda")
    if module is None:
        raise RuntimeError(
            f"physkernels._C_cuda is not available ({load_error('_C_cuda') or 'built without nvcc'}); "
            "rebuild with nvcc on PATH or PHYSKERNELS_CUDA=1"
        )
    return module
