"""GPU coverage, visible without a GPU: every registered cuda/triton implementation (of every op and physics
dispatcher, the Ising engines included) has a test that runs it on CUDA tensors. Those tests are the ``cuda``
cases of the op tests' device axis (tests/devices.py) and a few GPU-only tests; they skip on CPU machines, so
without this check a GPU backend without a GPU test would pass CI unnoticed."""

import importlib

import pytest

from physkernels.backends import dispatchers

GPU_KINDS = ("cuda", "triton")
MODULES_WITH_GPU_BACKENDS = ("physkernels.ops.mpo_linear", "physkernels.ops.cg2d", "physkernels.ops.taylor_linear",
                             "physkernels.physics.ising.engines", "physkernels.physics.nnqft.ensemble",
                             "physkernels.physics.rbm")
# (dispatcher name, backend) -> the tests ("module::function") that run that implementation on a GPU
_MPO = ["test_mpo_op::test_matches_reference_on_every_device", "test_mpo_op::test_paper_shape_every_batch"]
_CG2D = ["test_cg2d::test_matches_reference_on_every_device",
         "test_cg2d::test_kernels_span_several_blocks_on_every_device"]
_TAYLOR = ["test_taylor::test_matches_reference_on_every_device",
           "test_taylor::test_kernels_span_several_blocks_on_every_device"]
_NNQFT = ["test_nnqft::test_green_functions_match_reference_on_every_device"]
GPU_TESTS = {
    ("mpo_linear", "cuda"): _MPO + ["test_mpo_op::test_every_plan_on_every_device",
                                    "test_mpo_op::test_gradcheck_and_opcheck_on_every_device"],
    ("mpo_linear", "triton"): _MPO + ["test_mpo_op::test_triton_fused_chain_on_the_gpu"],
    ("cg2d", "cuda"): _CG2D + ["test_cg2d::test_gradcheck_and_opcheck_on_every_device"],
    ("cg2d", "triton"): _CG2D + ["test_cg2d::test_paper_layer_and_channels_last_on_every_device"],
    ("taylor_linear", "cuda"): _TAYLOR + ["test_taylor::test_gradcheck_and_opcheck_on_every_device"],
    ("taylor_linear", "triton"): _TAYLOR + [
        "test_taylor::test_auto_runs_triton_in_float32_and_cuda_in_float64_on_the_gpu"],
    ("nnqft_outputs", "cuda"): _NNQFT,
    ("nnqft_outputs", "triton"): _NNQFT,
    ("nnqft_bag_sums", "cuda"): _NNQFT,
    ("nnqft_bag_sums", "triton"): _NNQFT,
    ("rbm_gibbs", "triton"): ["test_rbm::test_triton_gibbs_samples_the_exact_transitions_on_the_gpu"],
    ("ising_metropolis", "triton"): ["test_ising_mc::test_gpu_metropolis_engine_matches_cpp_bit_for_bit"],
    ("ising_metropolis", "cuda"): ["test_ising_mc::test_gpu_metropolis_engine_matches_cpp_bit_for_bit"],
}


def registered_gpu_implementations() -> set[tuple[str, str]]:
    for name in MODULES_WITH_GPU_BACKENDS:
        importlib.import_module(name)
    return {(op, backend) for op, dispatcher in dispatchers().items() for backend in dispatcher.implemented
            if backend in GPU_KINDS and dispatcher.source(backend).startswith("physkernels.")}


def _gpu_runs(test) -> bool:
    """Whether ``test`` has a case on CUDA: marked ``gpu`` itself or through a parameter."""
    marks = list(getattr(test, "pytestmark", []))
    if any(m.name == "gpu" for m in marks):
        return True
    for mark in marks:
        if mark.name == "parametrize":
            for value in mark.args[1]:
                if isinstance(value, type(pytest.param(None))) and any(m.name == "gpu" for m in value.marks):
                    return True
    return False


def test_every_gpu_implementation_has_a_gpu_test():
    registered = registered_gpu_implementations()
    assert len(registered) >= 13  # the three ops' two GPU backends, NN-QFT's four, RBM, two Metropolis engines
    missing = sorted(registered - set(GPU_TESTS))
    assert not missing, f"GPU implementations without an entry in GPU_TESTS: {missing}"
    stale = sorted(set(GPU_TESTS) - registered)
    assert not stale, f"GPU_TESTS lists implementations that are not registered: {stale}"
    for key, names in GPU_TESTS.items():
        assert names, key
        for name in names:
            module, function = name.split("::")
            test = getattr(importlib.import_module(module), function, None)
            assert callable(test), f"{key}: tests/{module}.py has no test {function}"
            assert _gpu_runs(test) or not __import__("torch").cuda.is_available(), f"{name} has no GPU case"


def test_the_gpu_mark_is_visible_to_the_checker():
    """The checker itself: a GPU-only test and the device axis both count as GPU runs (when CUDA is present the
    device axis has a cuda case; without it, GPU-only tests are still marked)."""
    import test_rbm

    assert _gpu_runs(test_rbm.test_triton_gibbs_samples_the_exact_transitions_on_the_gpu)
    assert not _gpu_runs(test_rbm.test_triton_gibbs_limits_and_seeds)
