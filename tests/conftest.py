"""Test session setup: Triton kernels run in the CPU interpreter when no GPU is present."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import physkernels  # noqa: E402


def pytest_report_header(config):
    info = physkernels.info()
    return [f"physkernels {info['version']} from {os.path.dirname(physkernels.__file__)}",
            f"backends: {info['available_backends']}, compiled: {info['compiled']}, threads: {info['threads']}"]


@pytest.fixture(autouse=True)
def _restore_backend():
    """Every test starts and ends with the default backend choice."""
    previous = physkernels.get_backend()
    yield
    physkernels.set_backend(previous)


@pytest.fixture(autouse=True, scope="session")
def _exact_float32_references():
    """On a GPU the float32 references must not use TF32 tensor cores, or they would be the less accurate side."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
