"""GPU coverage, visible without a GPU: every registered cuda/triton implementation (of every op and physics
dispatcher, the Ising engines included) has a test in tests/test_gpu.py that exercises it (tests/test_gpu.py skips as a whole on CPU machines,
so without this check a GPU backend without a GPU test would pass CI unnoticed)."""

import importlib

import test_gpu
from physkernels.backends import dispatchers

GPU_KINDS = ("cuda", "triton")
MODULES_WITH_GPU_BACKENDS = ("physkernels.ops.mpo_linear", "physkernels.ops.cg2d", "physkernels.ops.taylor_linear",
                             "physkernels.physics.ising.engines",
                             "physkernels.physics.nnqft.ensemble", "physkernels.physics.rbm")


def registered_gpu_implementations() -> set[tuple[str, str]]:
    for name in MODULES_WITH_GPU_BACKENDS:
        importlib.import_module(name)
    return {(op, backend) for op, dispatcher in dispatchers().items() for backend in dispatcher.implemented
            if backend in GPU_KINDS and dispatcher.source(backend).startswith("physkernels.")}


def test_every_gpu_implementation_has_a_gpu_test():
    registered = registered_gpu_implementations()
    assert len(registered) >= 13  # the three ops' two GPU backends, NN-QFT's four, RBM, two Metropolis engines
    missing = sorted(registered - set(test_gpu.GPU_TESTS))
    assert not missing, f"GPU implementations without an entry in tests/test_gpu.py GPU_TESTS: {missing}"
    stale = sorted(set(test_gpu.GPU_TESTS) - registered)
    assert not stale, f"GPU_TESTS lists implementations that are not registered: {stale}"
    for key, names in test_gpu.GPU_TESTS.items():
        assert names, key
        for name in names:
            assert callable(getattr(test_gpu, name, None)), f"{key}: tests/test_gpu.py has no test {name}"
