"""physkernels.ops.mpo_linear: every backend and every planner strategy vs the dense reference (values, grads)."""

import importlib
import math
import random
import sys

import pytest
import torch

import physkernels
from physkernels.backends import available_backends
from physkernels.mpo import contract, plan, planner
from physkernels.ops import mpo_linear, reference_mpo_linear
from physkernels.testing import check_against_reference
from devices import (GPU_BACKENDS, check_on_device, device_backend_dtype, device_params, needs_gpu, on_device,
                     with_backend)

from physkernels.ops.mpo_linear import cpp_backend, plans

op_module = sys.modules["physkernels.ops.mpo_linear"]

TOL = {torch.float64: dict(atol=1e-9, rtol=1e-7), torch.float32: dict(atol=2e-4, rtol=2e-4)}


def random_problem(seed, n_range=(2, 6), max_dim=3, max_rank=3, dtype=torch.float64):
    """Random cores with n in n_range (ranks include 1), and a batch of inputs with extra leading dims."""
    rng = random.Random(seed)
    n = rng.randint(*n_range)
    ins = [rng.randint(1, max_dim) for _ in range(n)]
    outs = [rng.randint(1, max_dim) for _ in range(n)]
    ranks = [rng.choice([1, rng.randint(1, max_rank)]) for _ in range(n - 1)]
    bonds = [1] + ranks + [1]
    gen = torch.Generator().manual_seed(seed)
    cores = [torch.randn(bonds[k], ins[k], outs[k], bonds[k + 1], generator=gen, dtype=dtype) for k in range(n)]
    lead = [rng.randint(1, 3) for _ in range(rng.randint(1, 2))]
    x = torch.randn(*lead, math.prod(ins), generator=gen, dtype=dtype)
    bias = torch.randn(math.prod(outs), generator=gen, dtype=dtype)
    return x, cores, bias


def independent_mpo_linear(x, cores, bias=None):
    """Eq. 5 as one einsum over all cores at once (no partial products, no library code): W[j_1..j_n, i_1..i_n]
    = sum over bonds of prod_k cores[k][d_{k-1}, i_k, j_k, d_k]; y = x W^T + bias."""
    letters = iter("abcdefghklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    bonds = [next(letters) for _ in range(len(cores) + 1)]
    ins = [next(letters) for _ in cores]
    outs = [next(letters) for _ in cores]
    spec = ",".join(f"{bonds[k]}{ins[k]}{outs[k]}{bonds[k + 1]}" for k in range(len(cores)))
    w = torch.einsum(f"{spec}->{''.join(outs)}{''.join(ins)}", *cores)
    w = w.reshape(math.prod(c.shape[2] for c in cores), math.prod(c.shape[1] for c in cores))
    y = x @ w.t()
    return y if bias is None else y + bias


def test_reference_matches_eq5_elementwise():
    """The dense reference equals the literal matrix product of Eq. 5 entry by entry (row-major indices)."""
    x, cores, _ = random_problem(0, n_range=(3, 3))
    ins, outs = [c.shape[1] for c in cores], [c.shape[2] for c in cores]
    w = op_module.reference_mpo_weight(cores)
    for row in range(w.shape[0]):
        for col in range(w.shape[1]):
            j = torch.tensor(torch.unravel_index(torch.tensor(row), outs))
            i = torch.tensor(torch.unravel_index(torch.tensor(col), ins))
            prod = torch.eye(1, dtype=x.dtype)
            for k, core in enumerate(cores):
                prod = prod @ core[:, i[k], j[k], :]
            assert torch.allclose(w[row, col], prod[0, 0])


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(6))
def test_backend_matches_reference(backend, dtype, seed):
    if backend not in available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    x, cores, bias = random_problem(seed, dtype=dtype)
    if seed % 2:  # non-contiguous x: every other column of a wider tensor
        wide = torch.randn(*x.shape[:-1], 2 * x.shape[-1], dtype=dtype)
        x = wide[..., ::2]
        assert not x.is_contiguous()
    with physkernels.use_backend(backend):
        check_against_reference(mpo_linear, independent_mpo_linear, [x, cores, bias], **TOL[dtype])


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_custom_op_autograd_matches_reference(backend):
    """The registered op's own autograd (what torch.compile traces) agrees with the eager autograd.Function."""
    if backend not in available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    x, cores, bias = random_problem(21, n_range=(3, 5))
    x = x.reshape(-1, x.shape[-1])
    with physkernels.use_backend(backend):
        check_against_reference(torch.ops.physkernels.mpo_linear, independent_mpo_linear, [x, cores, bias])


def _planned(p, fused_forward=None, fused_backward=None, keep_states=False):
    class Planned(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, *cores):
            y, states = contract.run_forward(p, x, cores, fused_forward, keep_states=True)
            ctx.save_for_backward(x, *cores)
            ctx.states = states if keep_states else None
            return y

        @staticmethod
        def backward(ctx, grad):
            x, *cores = ctx.saved_tensors
            return tuple(contract.run_backward(p, grad, x, cores, fused_backward, states=ctx.states))

    return lambda x, cores: Planned.apply(x, *cores)


@pytest.mark.parametrize("seed", range(3))
def test_merged_core_kernel_adapters(seed):
    """contract.forward/backward_on_merged_cores (how the GPU fused kernels plug in): a kernel over merged cores,
    here the torch ltr chain, gives the reference's values and every core's gradient through every fused plan,
    with the forward's merged cores kept for the backward or merged again."""
    x, cores, _ = random_problem(300 + seed, n_range=(2, 5))
    x = x.reshape(-1, x.shape[-1])

    def merged_forward(x, merged):
        return contract.chain_forward(x, merged, "ltr")

    def merged_backward(grad, x, merged, need_x):
        return contract.chain_backward(grad, x, merged, "ltr", need_x=need_x)

    fused = contract.forward_on_merged_cores(merged_forward), contract.backward_on_merged_cores(merged_backward)
    shapes = op_module.mpo_shapes(cores)
    plans = [p for p in planner.enumerate_plans(*shapes, x.shape[0], x.dtype, kernels=("gemm", "fused"))
             if p.kernel == "fused"]
    assert plans
    for p in plans:
        for keep in (False, True):  # backward merging again / reusing the forward's merged cores
            check_against_reference(_planned(p, *fused, keep), reference_mpo_linear, [x, cores])


@pytest.mark.parametrize("seed", range(2))
def test_every_plan_skips_dx_when_x_needs_no_gradient(seed):
    """need_x=False: dx is None and every core gradient is the same as with dx (all plans, both backward paths)."""
    x, cores, _ = random_problem(200 + seed, n_range=(2, 5))
    x = x.reshape(-1, x.shape[-1])
    grad = torch.randn(x.shape[0], math.prod(c.shape[2] for c in cores), dtype=x.dtype)
    kernels = ("gemm", "fused") if "cpp" in available_backends("cpu") else ("gemm",)
    for p in planner.enumerate_plans(*op_module.mpo_shapes(cores), x.shape[0], x.dtype, kernels=kernels):
        for keep in (False, True):
            states = contract.run_forward(p, x, cores, cpp_backend.fused_forward, keep_states=True)[1] \
                if keep else None
            full = contract.run_backward(p, grad, x, cores, cpp_backend.fused_backward, states)
            cores_only = contract.run_backward(p, grad, x, cores, cpp_backend.fused_backward, states, need_x=False)
            assert cores_only[0] is None and all(torch.equal(a, b) for a, b in zip(cores_only[1:], full[1:])), p


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("seed", range(3))
def test_eager_inference_matches_reference(backend, seed):
    """Without gradients the eager call runs the planned kernels directly: same values as the reference, on x with
    extra leading dims, and an output that needs no gradient even when grad mode is on."""
    if backend not in available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    x, cores, bias = random_problem(500 + seed, n_range=(2, 5))
    want = independent_mpo_linear(x, cores, bias)
    with physkernels.use_backend(backend):
        with torch.no_grad():
            leaves = [c.clone().requires_grad_() for c in cores]
            got_no_grad = mpo_linear(x, leaves, bias)
        got = mpo_linear(x, cores, bias)
    for y in (got_no_grad, got):
        assert not y.requires_grad and y.shape == want.shape
        torch.testing.assert_close(y, want, **TOL[torch.float64])


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_eager_layer_without_input_gradient(backend):
    """A first layer: x needs no gradient, the cores' and bias's gradients match the reference."""
    if backend not in available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    x, cores, bias = random_problem(31, n_range=(3, 4))
    leaves = [c.clone().requires_grad_() for c in cores] + [bias.clone().requires_grad_()]
    with physkernels.use_backend(backend):
        y = mpo_linear(x, leaves[:-1], leaves[-1])
    y.square().sum().backward()
    want = [c.clone().requires_grad_() for c in cores] + [bias.clone().requires_grad_()]
    independent_mpo_linear(x, want[:-1], want[-1]).square().sum().backward()
    for got, ref in zip(leaves, want):
        torch.testing.assert_close(got.grad, ref.grad)


@pytest.mark.skipif("cpp" not in available_backends("cpu"), reason="_C not built")
def test_fused_cpp_independent_of_thread_count():
    x, cores, _ = random_problem(7, n_range=(4, 4), dtype=torch.float32)
    groups = ((0, 2), (2, 3), (3, 4))
    merged = [contract.merge_group(cores[a:b])[0] for a, b in groups]
    steps, _ = plans.fused_layout(tuple(tuple(c.shape) for c in merged), 1, 4, False)
    macs_per_sample = sum(count * m * k * rest for count, m, k, rest in steps)
    batch = 2**18 // macs_per_sample + 37  # enough work for the kernel to use every thread; a partial last tile
    _, _, tile = plans.fused_chain(merged, batch, 4)
    assert -(-batch // tile) >= 2
    x = torch.randn(batch, x.shape[-1])
    assert plans.fused_threads(steps, batch, tile) == min(torch.get_num_threads(), -(-batch // tile))
    grad = torch.randn(batch, math.prod(c.shape[2] for c in cores))
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            y, _ = cpp_backend.fused_forward(x, cores, groups)
            gx, gc = cpp_backend.fused_backward(grad, x, cores, groups)
            results.append([y, gx, *gc])
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.skipif("triton" not in available_backends("cpu"), reason="triton interpreter unavailable")
def test_triton_fused_chain_interpreted():
    from physkernels.ops.mpo_linear import triton_backend

    x, cores, bias = random_problem(3, n_range=(3, 3), dtype=torch.float32)
    x = x.reshape(-1, x.shape[-1])
    wide = torch.randn(70, x.shape[1])  # several batch tiles of the chain kernel (tile 16 or 32)
    for batch in (x, wide):
        for groups in (((0, 1), (1, 2), (2, 3)), ((0, 2), (2, 3))):
            y, _ = triton_backend.fused_forward(batch, cores, groups)
            torch.testing.assert_close(y, independent_mpo_linear(batch, cores), **TOL[torch.float32])
    with physkernels.use_backend("triton"):
        check_against_reference(mpo_linear, reference_mpo_linear, [x, cores, bias], **TOL[torch.float32])


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck(backend):
    if backend not in available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    x, cores, bias = random_problem(11, n_range=(3, 3))
    leaves = [x.reshape(-1, x.shape[-1]).clone().requires_grad_(), bias.clone().requires_grad_()]
    leaves += [c.clone().requires_grad_() for c in cores]
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda x, b, *cs: mpo_linear(x, list(cs), b), tuple(leaves))


def test_opcheck():
    x, cores, bias = random_problem(12, n_range=(3, 3))
    x = x.reshape(-1, x.shape[-1])
    torch.library.opcheck(torch.ops.physkernels.mpo_linear.default, (x, cores, bias))
    torch.library.opcheck(torch.ops.physkernels.mpo_linear.default, (x, cores, None))
    grad = torch.randn(x.shape[0], bias.shape[0], dtype=x.dtype)
    torch.library.opcheck(torch.ops.physkernels.mpo_linear_backward.default,
                          (grad, [True, True, False], x, cores, None))


def test_torch_compile_fullgraph():
    x, cores, bias = random_problem(13, n_range=(4, 4))
    compiled = torch.compile(lambda x, cores, bias: torch.relu(mpo_linear(x, cores, bias)), fullgraph=True)
    check_against_reference(compiled, lambda x, c, b: torch.relu(reference_mpo_linear(x, c, b)), [x, cores, bias])


# ------------------------------------------------------------------------------------------------ planner
def test_plan_costs_and_cache():
    p = plan((4, 4, 8, 8, 4), (4, 4, 8, 8, 4), 4, 256)
    assert isinstance(p, planner.Plan)
    assert p.forward.seconds > 0 and p.backward.seconds > p.forward.seconds
    assert p is plan((4, 4, 8, 8, 4), (4, 4, 8, 8, 4), (4, 4, 4, 4), 256)  # cached
    assert "chain" in p.strategy  # 11.6x fewer MACs than dense: never reconstruct W here


def test_chain_mac_count_matches_issue():
    """The plain ltr chain of (4,4,8,8,4)->(4,4,8,8,4), D=4 has 11.6x fewer MACs than the dense GEMM."""
    shape = (4, 4, 8, 8, 4)
    groups = tuple((k, k + 1) for k in range(5))
    steps = planner.chain_steps(planner.merged_shapes(shape, shape, (4,) * 4, groups), "ltr", 1)
    macs = sum(s.count * s.m * s.k * s.n for s in steps)
    assert macs == 1_441_792
    assert 4096 * 4096 / macs == pytest.approx(11.6, abs=0.05)


def test_plan_prefers_dense_for_small_layer_at_large_batch():
    """(4,7,7,4)->(4,4,4,4), D=16: the chain has more MACs than dense, so a large batch reconstructs W."""
    assert plan((4, 7, 7, 4), (4, 4, 4, 4), 16, 4096).dense
    p1 = plan((4, 7, 7, 4), (4, 4, 4, 4), 16, 1)
    assert not p1.dense  # reconstructing W (>= prod I prod J D MACs) costs more than one sample's chain


def test_plan_objectives_and_validation():
    fwd = plan((2, 10, 10, 2), (2, 5, 6, 2), 4, 32, objective="forward")
    both = plan((2, 10, 10, 2), (2, 5, 6, 2), 4, 32)
    assert fwd.forward.seconds <= both.forward.seconds
    with pytest.raises(ValueError, match="objective"):
        plan((2, 2), (2, 2), 2, 4, objective="fastest")
    with pytest.raises(ValueError, match="ranks"):
        plan((2, 2), (2, 2), (2, 2), 4)
    with pytest.raises(ValueError, match="batch"):
        plan((2, 2), (2, 2), 2, 0)
    with pytest.raises(ValueError, match="out_shape"):
        plan((2, 2), (2,), 2, 4)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_names_the_argument():
    x, cores, bias = random_problem(20, n_range=(3, 3))
    with pytest.raises(ValueError, match="bond mismatch"):
        bad = list(cores)
        bad[1] = torch.randn(bad[1].shape[0] + 1, *bad[1].shape[1:], dtype=x.dtype)
        mpo_linear(x, bad)
    with pytest.raises(ValueError, match="x's last dimension"):
        mpo_linear(x[..., :-1], cores)
    with pytest.raises(TypeError, match=r"cores\[1\] has dtype"):
        mpo_linear(x, [cores[0], cores[1].float(), cores[2]])
    with pytest.raises(ValueError, match=r"cores\[0\] is on"):
        mpo_linear(x, [cores[0].to("meta"), *cores[1:]])
    with pytest.raises(ValueError, match="bias must have shape"):
        mpo_linear(x, cores, bias[:-1])
    with pytest.raises(TypeError, match="bias has dtype"):
        mpo_linear(x, cores, bias.float())
    with pytest.raises(TypeError, match="x must be float16, bfloat16, float32 or float64"):
        mpo_linear(x.long(), cores)
    with pytest.raises(TypeError, match="cores must be a list"):
        mpo_linear(x, cores[0])
    with pytest.raises(ValueError, match=r"cores\[0\] must have left bond dimension 1"):
        mpo_linear(x, [torch.randn(2, *cores[0].shape[1:], dtype=x.dtype), *cores[1:]])
    with pytest.raises(ValueError, match="4-D"):
        mpo_linear(x, [cores[0][0], *cores[1:]])


def test_eager_path_only_when_nothing_traces():
    """Plain eager calls with gradients take the autograd.Function; fake tensors go through the custom op."""
    x, cores, bias = random_problem(5, n_range=(3, 3))
    x = x.reshape(-1, x.shape[-1]).requires_grad_(True)
    y = mpo_linear(x, cores, bias)
    assert type(y.grad_fn.next_functions[0][0]).__name__ == "_EagerMPOLinearBackward"  # under the final reshape
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode()
    fx = mode.from_tensor(x.detach()).requires_grad_(True)
    fcores = [mode.from_tensor(c.detach()).requires_grad_(True) for c in cores]
    with mode:
        fy = mpo_linear(fx, fcores, None)
    assert fy.shape == (x.shape[0], math.prod(c.shape[2] for c in cores))


# ------------------------------------------------------------------------------------------- every device
@pytest.mark.parametrize("device,backend,dtype", device_backend_dtype())
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_every_device(device, backend, dtype, seed):
    x, cores, bias = random_problem(300 + seed, n_range=(2, 5), max_dim=4, max_rank=5, dtype=torch.float64)
    check_on_device(with_backend(mpo_linear, backend), reference_mpo_linear, [x, cores, bias], device, dtype)


@pytest.mark.parametrize("device,backend,dtype", device_backend_dtype())
@pytest.mark.parametrize("batch", [1, 7, 33, 1000])
def test_paper_shape_every_batch(device, backend, dtype, batch):
    """The FC2 layer of the paper's MPO-Net (4,4,8,8,4)^2 with D=4, batch sizes below and across GPU tiles."""
    if device == "cpu" and batch == 1000:
        pytest.skip("CPU batch tiles are covered by the smaller batches")
    gen = torch.Generator().manual_seed(batch)
    shape, bonds = (4, 4, 8, 8, 4), (1, 4, 4, 4, 4, 1)
    cores = [torch.randn(bonds[k], shape[k], shape[k], bonds[k + 1], generator=gen, dtype=torch.float64) / 3
             for k in range(5)]
    x = torch.randn(batch, math.prod(shape), generator=gen, dtype=torch.float64)
    check_on_device(with_backend(mpo_linear, backend), reference_mpo_linear, [x, cores], device, dtype)


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_every_plan_on_every_device(device, dtype, seed):
    """Every grouping x direction x kernel the planner can choose, with the device's fused chain kernels (C++ on
    the CPU, CUDA on a GPU), forward and backward, the backward recomputing the chain states or using the
    forward's: the same values and gradients as the reference."""
    if device == "cuda" and "cuda" not in GPU_BACKENDS:
        pytest.skip("physkernels._C_cuda not built")
    compiled = device == "cuda" or "cpp" in available_backends("cpu")
    fused = cpp_backend if device == "cpu" else importlib.import_module("physkernels.ops.mpo_linear.cuda_backend")
    x, cores, _ = random_problem(400 + seed, n_range=(2, 5))
    x = x.reshape(-1, x.shape[-1])
    kernels = ("gemm", "fused") if compiled else ("gemm",)
    plans = planner.enumerate_plans(*op_module.mpo_shapes(cores), x.shape[0], dtype, kernels=kernels)
    assert len(plans) >= 2 ** (len(cores) - 1)
    for p in plans:
        for keep in (False, True):
            fn = _planned(p, fused.fused_forward, fused.fused_backward, keep)
            check_on_device(fn, reference_mpo_linear, [x, cores], device, dtype)


@pytest.mark.gpu
@needs_gpu
def test_triton_fused_chain_on_the_gpu():
    """The Triton fused chain (inference forward) on batches below and across its tile, against float64."""
    if "triton" not in GPU_BACKENDS:
        pytest.skip("triton unavailable")
    from physkernels.ops.mpo_linear import triton_backend

    x, cores, _ = random_problem(3, n_range=(3, 4), max_dim=4, max_rank=4)
    x, cores = on_device([x.reshape(-1, x.shape[-1]), cores], "cuda", torch.float64)
    for batch in (1, 17, 300):
        xb = x.repeat(-(-batch // x.shape[0]), 1)[:batch]
        groups = tuple((k, k + 1) for k in range(len(cores)))
        got = triton_backend.fused_forward(xb.float(), [c.float() for c in cores], groups)[0].double()
        want = reference_mpo_linear(xb, cores)
        assert (got - want).norm() <= 3e-5 * want.norm(), f"batch {batch}"


@pytest.mark.parametrize("device,backend,dtype", device_backend_dtype(torch.float64))
def test_gradcheck_and_opcheck_on_every_device(device, backend, dtype):
    x, cores, bias = random_problem(11, n_range=(3, 3))
    x, cores, bias = on_device([x.reshape(-1, x.shape[-1]), cores, bias], device, dtype)
    leaves = [x.requires_grad_(), bias.requires_grad_()] + [c.requires_grad_() for c in cores]
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda x, b, *cs: mpo_linear(x, list(cs), b), tuple(leaves))
        torch.library.opcheck(torch.ops.physkernels.mpo_linear.default, (x, cores, bias))


# ----------------------------------------------------------------------------------------------------------------
# Choosing the plan by measurement
# ----------------------------------------------------------------------------------------------------------------
def _tuning_problem():
    gen = torch.Generator().manual_seed(31)
    shapes, bonds = ((3, 4, 2), (2, 3, 4)), (1, 3, 3, 1)
    cores = [torch.randn(bonds[k], shapes[0][k], shapes[1][k], bonds[k + 1], generator=gen) for k in range(3)]
    return torch.randn(9, 24, generator=gen), cores


def _timed_chain(delay_fused: float):
    """The C++ chain kernels with ``delay_fused`` seconds added to every fused call (a fused chain that is slow or,
    with a negative delay, one that returns at once without computing anything)."""
    import time

    def forward(x, cores, groups):
        if delay_fused < 0:
            return x.new_zeros(x.shape[0], math.prod(c.shape[2] for c in cores)), []
        time.sleep(delay_fused)
        return cpp_backend.fused_forward(x, cores, groups)

    return plans.ChainKernels("test", ("gemm", "fused"), forward, cpp_backend.fused_backward)


@pytest.mark.skipif("cpp" not in available_backends("cpu"), reason="C++ extension not built")
@pytest.mark.parametrize("delay,fused_wins", [(0.01, False), (-1.0, True)])
def test_autotune_picks_the_measured_fastest_candidate(delay, fused_wins):
    """A fused kernel made 10 ms slower is never picked for the forward; one that costs nothing always is."""
    x, cores = _tuning_problem()
    physkernels.set_autotune(True)
    try:
        p = plans.plan_for(x, cores, "forward", _timed_chain(delay))
        assert (p.kernel == "fused") == fused_wins, p.strategy
        candidates = plans.tuning_candidates(planner.enumerate_plans(
            (3, 4, 2), (2, 3, 4), (3, 3), 9, kernels=("gemm", "fused")), "forward")
        assert p in candidates
        assert plans.plan_for(x, cores, "forward", _timed_chain(delay)) is p  # memoised: not measured again
    finally:
        physkernels.set_autotune(True)


@pytest.mark.skipif("cpp" not in available_backends("cpu"), reason="C++ extension not built")
def test_autotune_off_uses_the_cost_model_and_tuning_leaves_the_rng_alone():
    x, cores = _tuning_problem()
    try:
        physkernels.set_autotune(False)
        for objective in ("forward", "training", "backward"):
            assert plans.plan_for(x, cores, objective, cpp_backend.chain()) == plan(
                (3, 4, 2), (2, 3, 4), (3, 3), 9, objective=objective, kernels=cpp_backend.chain().kinds)
        physkernels.set_autotune(True)
        torch.use_deterministic_algorithms(True)
        try:  # deterministic algorithms requested: the cost model decides (its fused pick), not the timing
            assert plans.plan_for(x, cores, "forward", _timed_chain(0.01)) == plan(
                (3, 4, 2), (2, 3, 4), (3, 3), 9, objective="forward", kernels=("gemm", "fused"))
        finally:
            torch.use_deterministic_algorithms(False)
        state = torch.random.get_rng_state()
        for objective in ("forward", "training", "backward"):
            plans.plan_for(x, cores, objective, cpp_backend.chain())
        assert torch.equal(state, torch.random.get_rng_state())
    finally:
        physkernels.set_autotune(True)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        physkernels.set_autotune("yes")


def test_tuning_candidates_hold_each_kind_within_the_spread():
    every = planner.enumerate_plans((4, 7, 7, 4), (4, 4, 4, 4), (16, 16, 16), 100, kernels=("gemm", "fused"))
    for objective in ("forward", "training", "backward"):
        chosen = plans.tuning_candidates(every, objective)
        best = min(planner.objective_seconds(p, objective) for p in every)
        assert min(planner.objective_seconds(p, objective) for p in chosen) == best
        assert all(planner.objective_seconds(p, objective) <= plans.TUNED_SPREAD * best for p in chosen)
        assert len(chosen) <= plans.TUNED_CANDIDATES + 3
        assert any(p.dense for p in chosen) or all(
            planner.objective_seconds(p, objective) > plans.TUNED_SPREAD * best for p in every if p.dense)
