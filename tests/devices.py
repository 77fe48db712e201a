"""The device axis of the tests: every op test that can run on more than one device takes ``device`` (and the
backend that runs kernels there) as a parameter, CPU always and CUDA where present. The CUDA cases carry the
``gpu`` mark (``pytest -m gpu`` runs them alone; bench/gpu.sh does).

On the CPU the device-parametrized tests run the C++ kernels; the Triton kernels run there in the interpreter
through their own, smaller tests (marked ``triton``)."""

import pytest
import torch

import physkernels
from physkernels.backends import available_backends
from physkernels.testing import check_against_float64_reference, check_against_reference, map_floating

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GPU_BACKENDS = [b for b in ("cuda", "triton") if torch.cuda.is_available() and b in available_backends("cuda")]
# the dtypes each backend's kernels run in (Triton kernels: float32)
DTYPES = {"cpp": (torch.float32, torch.float64), "cuda": (torch.float32, torch.float64), "triton": (torch.float32,)}


def kernel_backends(device: str) -> list[str]:
    """The backends whose compiled kernels the device-parametrized tests run on ``device``."""
    if device == "cpu":
        return [b for b in ("cpp",) if b in available_backends("cpu")]
    return list(GPU_BACKENDS)


def _param(device, *values):
    return pytest.param(device, *values, marks=[pytest.mark.gpu] if device == "cuda" else [],
                        id="-".join([device, *(str(v).removeprefix("torch.") for v in values)]))


def device_params() -> list:
    """Every device, as parameters (CUDA marked ``gpu``)."""
    return [_param(d) for d in DEVICES]


def device_backend_dtype(dtype: torch.dtype | None = None) -> list:
    """``(device, backend, dtype)`` for every device, kernel backend there and dtype it runs (only ``dtype``
    when given)."""
    return [_param(d, b, t) for d in DEVICES for b in kernel_backends(d) for t in DTYPES[b]
            if dtype is None or t == dtype]


def device_backend() -> list:
    """``(device, backend)`` for every device and kernel backend there."""
    return [_param(d, b) for d in DEVICES for b in kernel_backends(d)]


def on_device(args, device: str, dtype: torch.dtype):
    """The same floating-point arguments on ``device`` in ``dtype`` (inside lists too)."""
    return map_floating(args, lambda t: t.to(device, dtype))


def check_on_device(op, reference, args, device: str, dtype: torch.dtype, names=None):
    """``op`` on ``device`` in ``dtype`` against the plain-torch reference: tight elementwise in float64,
    normwise against the float64 reference in float32 (values and all gradients)."""
    if dtype == torch.float64:
        check_against_reference(op, reference, on_device(args, device, dtype), names=names)
    else:
        check_against_float64_reference(op, reference, on_device(args, device, dtype), names=names)


def with_backend(fn, backend: str):
    """``fn`` run under ``physkernels.use_backend(backend)``."""
    def call(*args):
        with physkernels.use_backend(backend):
            return fn(*args)
    return call


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
