"""The backend spine: selection, context manager, environment variable, clear errors, info()."""

import os
import subprocess
import sys

import pytest
import torch

import physkernels
from physkernels.backends import BackendUnavailableError, OpDispatcher


def _dispatcher():
    d = OpDispatcher("demo", auto_order={"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton", "reference")})
    d.register("reference")(lambda: "reference")
    d.register("cpp")(lambda: "cpp")
    return d


def test_compiled_module_is_present():
    assert physkernels.info()["compiled"]["_C"], "physkernels._C must be built by `pip install .`"
    assert "cpp" in physkernels.available_backends("cpu")


def test_auto_picks_first_available_in_order():
    d = _dispatcher()
    assert d.resolve("cpu") == "cpp"
    with physkernels.use_backend("reference"):
        assert d.resolve("cpu") == "reference"
    assert d.resolve("cpu") == "cpp"


def test_auto_order_can_differ_per_dtype():
    d = OpDispatcher("demo", auto_order={"cpu": ("cpp", "reference"), "cpu:float64": ("reference", "cpp")})
    d.register("reference")(lambda: "reference")
    d.register("cpp")(lambda: "cpp")
    assert d.resolve("cpu") == d.resolve("cpu", dtype=torch.float32) == "cpp"
    assert d.resolve("cpu", dtype=torch.float64) == "reference"
    assert d.get("cpu", dtype=torch.float64)() == "reference"
    with physkernels.use_backend("cpp"):  # an explicit choice is not overridden
        assert d.resolve("cpu", dtype=torch.float64) == "cpp"


def test_set_backend_and_context_manager_restore():
    physkernels.set_backend("reference")
    assert physkernels.get_backend() == "reference"
    with physkernels.use_backend("cpp"):
        assert physkernels.get_backend() == "cpp"
    assert physkernels.get_backend() == "reference"


def test_context_manager_restores_after_exception():
    with pytest.raises(KeyError):
        with physkernels.use_backend("reference"):
            raise KeyError("boom")
    assert physkernels.get_backend() == "auto"


def test_unknown_backend_name_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        physkernels.set_backend("fortran")


def test_missing_backend_raises_clear_error():
    d = _dispatcher()
    with physkernels.use_backend("cuda"):
        with pytest.raises(BackendUnavailableError, match="has no 'cuda' implementation"):
            d.resolve("cpu")
    d.register("cuda")(lambda: "cuda")
    with physkernels.use_backend("cuda"):
        with pytest.raises(BackendUnavailableError, match="runs on CUDA tensors"):
            d.resolve("cpu")


def test_environment_variable_sets_the_default():
    code = "import physkernels; print(physkernels.get_backend())"
    env = dict(os.environ, PHYSKERNELS_BACKEND="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"
    env["PHYSKERNELS_BACKEND"] = "nonsense"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "backend must be one of" in bad.stderr


def test_info_reports_build_and_threads():
    info = physkernels.info()
    for key in ("version", "available_backends", "compile_flags", "threads", "torch"):
        assert key in info
    assert info["threads"] == torch.get_num_threads()
    assert "-O3" in info["compile_flags"]
    assert "-march=native" not in info["compile_flags"]


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "physkernels.cli", "info"], capture_output=True, text=True,
                         check=True)
    assert '"version"' in out.stdout
