"""physkernels: hand-written kernels for physics-inspired neural-network layers.

Public API (see README.md):

* ``physkernels.ops``: the ops (``torch.library`` custom ops with autograd and fake kernels).
* ``physkernels.nn``: drop-in layers.
* ``set_backend`` / ``use_backend`` / ``get_backend`` / ``available_backends``: backend selection.
* ``info()``: version, backends, compile flags and threads of this installation.
* ``set_autotune(enabled)``: MPO contraction plans and GPU kernel configurations chosen by timing on their first
  call (default) or deterministically (also whenever ``torch.use_deterministic_algorithms(True)`` is set).

The CPU kernels use ``torch.get_num_threads()`` threads; set it with ``torch.set_num_threads``.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from . import _extensions
from .backends import (
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "available_backends",
    "compress",
    "get_backend",
    "info",
    "set_backend",
    "set_autotune",
    "use_backend",
]

# Submodules imported on first attribute access, so `import physkernels` stays cheap.
_LAZY_SUBMODULES = ("ops", "nn", "benchmarks", "testing", "physics", "data", "mpo", "taylor")
# Top-level functions that live in submodules: name -> (module, attribute).
_LAZY_FUNCTIONS = {"compress": (".nn.compress", "compress"),
                   "set_autotune": ("._autotune", "set_autotune")}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_FUNCTIONS:
        module, attribute = _LAZY_FUNCTIONS[name]
        return getattr(importlib.import_module(module, __name__), attribute)
    raise AttributeError(f"module 'physkernels' has no attribute {name!r}")


def info() -> dict[str, Any]:
    """Describe this installation: version, backends per device, compile flags, threads, torch version, GPU."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cpu_module = _extensions.load("_C")
    cuda_module = _extensions.load("_C_cuda")
    build = dict(cpu_module.build_info()) if cpu_module is not None else {}
    return {
        "version": __version__,
        "torch": torch.__version__,
        "backend": get_backend(),
        "available_backends": {d: available_backends(d) for d in devices},
        "compiled": {
            "_C": cpu_module is not None,
            "_C_cuda": cuda_module is not None,
            "_C_error": _extensions.load_error("_C") or None,
        },
        "compile_flags": build.get("compile_flags"),
        "compiler": build.get("compiler"),
        "openmp": build.get("openmp"),
        "threads": torch.get_num_threads(),
        "cuda_runtime": cuda_module.runtime_version() if cuda_module is not None else None,
        "gpu": (f"{torch.cuda.get_device_name(0)} (sm_{''.join(map(str, torch.cuda.get_device_capability(0)))})"
                if torch.cuda.is_available() else None),
    }
