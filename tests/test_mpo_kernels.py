"""The fused MPO chain's micro-kernels (csrc/mpo_gemm_kernel.inl) on every instruction set this CPU runs.

The kernel set is chosen once per process (``PHYSKERNELS_MPO_ISA`` caps it), so each instruction set is checked in
its own subprocess: float64 and float32 values and every gradient of the fused chain against the dense reference,
on shapes whose rows, columns and batch leave remainders in every register tile (m not a multiple of 12/6, k = 1,
rows shorter than one vector, odd batches that leave a partial batch tile).
"""

import os
import subprocess
import sys

import pytest
import torch

from physkernels.backends import available_backends

pytestmark = pytest.mark.skipif("cpp" not in available_backends("cpu"), reason="_C not built")

# (in_shape, out_shape, ranks), groupings to fuse, batches
CASES = [
    (((3, 5, 2), (7, 1, 13), (13, 6)), (((0, 1), (1, 2), (2, 3)), ((0, 2), (2, 3)), ((0, 3),)), (1, 17, 37)),
    (((1, 4, 9, 2), (2, 3, 1, 5), (1, 11, 3)), (((0, 1), (1, 2), (2, 3), (3, 4)), ((0, 1), (1, 4))), (5, 40)),
    (((16, 2), (25, 3), (7,)), (((0, 1), (1, 2)),), (3, 64)),
]


def check_fused_chain(seed: int = 0) -> None:
    """Fused forward/backward vs the reference for every case (run inside the subprocess)."""
    import importlib

    op = importlib.import_module("physkernels.ops.mpo_linear")
    cpp = importlib.import_module("physkernels.ops.mpo_linear.cpp_backend")
    gen = torch.Generator().manual_seed(seed)
    for (in_shape, out_shape, ranks), groupings, batches in CASES:
        bonds = (1, *ranks, 1)
        for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-4)):
            cores = [torch.randn(bonds[k], in_shape[k], out_shape[k], bonds[k + 1], generator=gen, dtype=dtype)
                     for k in range(len(in_shape))]
            for batch in batches:
                x = torch.randn(batch, torch.Size(in_shape).numel(), generator=gen, dtype=dtype)
                grad = torch.randn(batch, torch.Size(out_shape).numel(), generator=gen, dtype=dtype)
                w = op.reference_mpo_weight(cores)
                want_y, want_gx = x @ w.t(), grad @ w
                # each core's gradient = the projection of dW onto it (the reference's chain rule)
                want_gc = op.reference_weight_grad_to_cores(grad.t() @ x, cores)
                for groups in groupings:
                    y, _ = cpp.fused_forward(x, cores, groups)
                    gx, gc = cpp.fused_backward(grad, x, cores, groups)
                    scale = want_y.abs().max()
                    assert (y - want_y).abs().max() <= tol * scale, (in_shape, groups, batch, dtype)
                    assert (gx - want_gx).abs().max() <= tol * want_gx.abs().max(), (in_shape, groups, batch, dtype)
                    for got, want in zip(gc, want_gc):
                        assert (got - want).abs().max() <= tol * want.abs().max(), (in_shape, groups, batch, dtype)
                    # without dx (x needs no gradient) the core gradients are the same bits
                    no_gx, gc_only = cpp.fused_backward(grad, x, cores, groups, need_x=False)
                    assert no_gx is None and all(torch.equal(a, b) for a, b in zip(gc_only, gc))


def _isas():
    import physkernels._C as C

    best = C.mpo.isa()
    return {"avx512": ["baseline", "avx2", "avx512"], "avx2": ["baseline", "avx2"]}.get(best, ["baseline"])


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_fused_chain_on_every_instruction_set(isa):
    if isa not in _isas():
        pytest.skip(f"this CPU does not run {isa}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PHYSKERNELS_MPO_ISA=isa, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import physkernels._C as C, sys; assert C.mpo.isa() == sys.argv[1], C.mpo.isa(); "
            "from tests.test_mpo_kernels import check_fused_chain; check_fused_chain()")
    result = subprocess.run([sys.executable, "-c", code, isa], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("groups,message", [
    (((0, 1), (2, 3)), "contiguous"),
    (((0, 2),), "cover every core"),
    (((0, 1), (1, 1), (1, 3)), "non-empty"),
])
def test_binding_rejects_bad_groups(groups, message):
    """The C++ merge validates the plan's grouping itself (pybind11 turns std::invalid_argument into ValueError)."""
    import physkernels._C as C

    cores = [torch.randn(1, 2, 3, 2), torch.randn(2, 2, 2, 3), torch.randn(3, 2, 1, 1)]
    x, y = torch.randn(4, 8), torch.empty(4, 6)
    with pytest.raises(ValueError, match=message):
        C.mpo.forward_f32(x.data_ptr(), 4, [c.data_ptr() for c in cores], [tuple(c.shape) for c in cores], groups,
                          y.data_ptr(), 4, 1)


def test_binding_rejects_bond_mismatch():
    import physkernels._C as C

    cores = [torch.randn(1, 2, 3, 2), torch.randn(3, 2, 2, 1)]
    x, y = torch.randn(4, 4), torch.empty(4, 6)
    with pytest.raises(ValueError, match="bond mismatch"):
        C.mpo.forward_f32(x.data_ptr(), 4, [c.data_ptr() for c in cores], [tuple(c.shape) for c in cores],
                          ((0, 1), (1, 2)), y.data_ptr(), 4, 1)
