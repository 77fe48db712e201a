"""The GPU backends on a real GPU: every op's ``cuda`` and ``triton`` backends on CUDA tensors against the plain-torch
reference (values and all gradients; float64 where the backend has it), gradcheck and opcheck on the device, the
layers end to end, and the physics kernels. Skipped without a GPU (the CPU suite runs Triton in the interpreter)."""

import copy
import math

import pytest
import torch

import physkernels
from physkernels import nn as pnn
from physkernels.backends import available_backends
from physkernels.mpo import planner
from physkernels.ops import mpo_linear, reference_mpo_linear
from physkernels.ops.cg2d import cg2d, reference_cg2d
from physkernels.ops.mpo_linear import cuda_backend
from physkernels.ops.taylor_linear import reference_taylor_linear, taylor_linear
from physkernels.physics import nnqft
from physkernels.physics.ising import engines
from physkernels.physics.rbm import all_binary_states, gibbs
from physkernels.testing import check_against_float64_reference, check_against_reference, map_floating
from test_cg2d import NAMES_2, geometry, make_args, random_config
from test_mpo_op import _planned, op_module, random_problem
from test_rbm import assert_frequencies, random_rbm, state_index, transition_matrix
from test_taylor import _args as taylor_args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

# Which tests below run each GPU implementation (dispatcher name, backend) -> test functions. A CPU-side test
# (tests/test_gpu_coverage.py) checks that every registered cuda/triton implementation is listed here, so a new GPU
# backend without a GPU test fails CI even on machines without a GPU.
GPU_TESTS = {
    ("mpo_linear", "cuda"): ["test_mpo_matches_reference", "test_mpo_every_cuda_plan_matches_reference",
                             "test_mpo_gradcheck_and_opcheck"],
    ("mpo_linear", "triton"): ["test_mpo_matches_reference", "test_mpo_triton_fused_chain"],
    ("cg2d", "cuda"): ["test_cg2d_matches_reference", "test_kernels_span_several_blocks_of_every_tiled_dimension",
                       "test_cg2d_gradcheck_and_opcheck"],
    ("cg2d", "triton"): ["test_cg2d_matches_reference", "test_kernels_span_several_blocks_of_every_tiled_dimension"],
    ("taylor_linear", "cuda"): ["test_taylor_matches_reference",
                                "test_kernels_span_several_blocks_of_every_tiled_dimension",
                                "test_taylor_gradcheck_and_opcheck"],
    ("taylor_linear", "triton"): ["test_taylor_matches_reference",
                                  "test_kernels_span_several_blocks_of_every_tiled_dimension"],
    ("nnqft_outputs", "cuda"): ["test_nnqft_green_functions_match_reference"],
    ("nnqft_outputs", "triton"): ["test_nnqft_green_functions_match_reference"],
    ("nnqft_bag_sums", "cuda"): ["test_nnqft_green_functions_match_reference"],
    ("nnqft_bag_sums", "triton"): ["test_nnqft_green_functions_match_reference"],
    ("rbm_gibbs", "triton"): ["test_rbm_triton_gibbs_samples_the_exact_transitions"],
    ("ising_metropolis", "triton"): ["test_ising_gpu_engine_matches_cpp_bit_for_bit"],
    ("ising_metropolis", "cuda"): ["test_ising_gpu_engine_matches_cpp_bit_for_bit"],
}
GPU_BACKENDS = [b for b in ("cuda", "triton") if torch.cuda.is_available() and b in available_backends("cuda")]
DTYPES = {"cuda": (torch.float32, torch.float64), "triton": (torch.float32,)}  # Triton kernels run in float32
CASES = [(b, d) for b in GPU_BACKENDS for d in DTYPES[b]]


@pytest.fixture(autouse=True, scope="module")
def _exact_float32_references():
    """The float32 references must not use TF32 tensor cores, or they would be the less accurate side."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def to_gpu(args, dtype):
    """The same (floating-point) arguments on the GPU in ``dtype``, inside lists too."""
    return map_floating(args, lambda t: t.to("cuda", dtype))


def check_on_gpu(op, reference, args, dtype, names=None):
    """``op`` on the GPU in ``dtype`` against the plain-torch reference: tight elementwise in float64, normwise
    against the float64 reference in float32."""
    if dtype == torch.float64:
        check_against_reference(op, reference, to_gpu(args, dtype), names=names)
    else:
        check_against_float64_reference(op, reference, to_gpu(args, dtype), names=names)


def with_backend(fn, backend):
    def call(*args):
        with physkernels.use_backend(backend):
            return fn(*args)
    return call


def test_both_gpu_backends_are_available():
    """On a GPU machine both GPU backends must be there (a failed nvcc build or a broken Triton shows here)."""
    assert {"cuda", "triton"} <= set(available_backends("cuda"))


# ------------------------------------------------------------------------------------------------------- MPO
@pytest.mark.parametrize("backend,dtype", CASES)
@pytest.mark.parametrize("seed", range(6))
def test_mpo_matches_reference(backend, dtype, seed):
    x, cores, bias = random_problem(300 + seed, n_range=(2, 5), max_dim=4, max_rank=5, dtype=torch.float64)
    check_on_gpu(with_backend(mpo_linear, backend), reference_mpo_linear, [x, cores, bias], dtype)


@pytest.mark.parametrize("backend,dtype", CASES)
@pytest.mark.parametrize("batch", [1, 7, 33, 1000])
def test_mpo_paper_shape_every_batch(backend, dtype, batch):
    """The FC2 layer of the paper's MPO-Net (4,4,8,8,4)^2 with D=4, batch sizes below and across GPU tiles."""
    gen = torch.Generator().manual_seed(batch)
    shape, bonds = (4, 4, 8, 8, 4), (1, 4, 4, 4, 4, 1)
    cores = [torch.randn(bonds[k], shape[k], shape[k], bonds[k + 1], generator=gen, dtype=torch.float64) / 3
             for k in range(5)]
    x = torch.randn(batch, math.prod(shape), generator=gen, dtype=torch.float64)
    check_on_gpu(with_backend(mpo_linear, backend), reference_mpo_linear, [x, cores], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_mpo_every_cuda_plan_matches_reference(dtype, seed):
    """Every grouping x direction x kernel of the planner, with the CUDA fused chain forward and backward."""
    if "cuda" not in GPU_BACKENDS:
        pytest.skip("physkernels._C_cuda not built")
    x, cores, _ = random_problem(400 + seed, n_range=(2, 5))
    x = x.reshape(-1, x.shape[-1])
    plans = planner.enumerate_plans(*op_module.mpo_shapes(cores), x.shape[0], dtype, kernels=("gemm", "fused"))
    for p in plans:
        for keep in (False, True):
            fn = _planned(p, cuda_backend.fused_forward, cuda_backend.fused_backward, keep)
            check_on_gpu(fn, reference_mpo_linear, [x, cores], dtype)


def test_mpo_triton_fused_chain():
    """The Triton fused chain (inference forward) on batches below and across its tile, against float64."""
    if "triton" not in GPU_BACKENDS:
        pytest.skip("triton unavailable")
    from physkernels.ops.mpo_linear import triton_backend

    x, cores, _ = random_problem(3, n_range=(3, 4), max_dim=4, max_rank=4)
    x, cores = to_gpu([x.reshape(-1, x.shape[-1]), cores], torch.float64)
    for batch in (1, 17, 300):
        xb = x.repeat(-(-batch // x.shape[0]), 1)[:batch]
        groups = tuple((k, k + 1) for k in range(len(cores)))
        got = triton_backend.fused_forward(xb.float(), [c.float() for c in cores], groups)[0].double()
        want = reference_mpo_linear(xb, cores)
        assert (got - want).norm() <= 3e-5 * want.norm(), f"batch {batch}"


@pytest.mark.parametrize("backend", [b for b in GPU_BACKENDS if torch.float64 in DTYPES[b]])
def test_mpo_gradcheck_and_opcheck(backend):
    x, cores, bias = random_problem(11, n_range=(3, 3))
    x, cores, bias = to_gpu([x.reshape(-1, x.shape[-1]), cores, bias], torch.float64)
    leaves = [x.requires_grad_(), bias.requires_grad_()] + [c.requires_grad_() for c in cores]
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda x, b, *cs: mpo_linear(x, list(cs), b), tuple(leaves))
        torch.library.opcheck(torch.ops.physkernels.mpo_linear.default, (x, cores, bias))


# ------------------------------------------------------------------------------------------------------ CG2d
@pytest.mark.parametrize("backend,dtype", CASES)
@pytest.mark.parametrize("seed", range(12))
def test_cg2d_matches_reference(backend, dtype, seed):
    cfg = dict(random_config(seed), order=2)  # the GPU kernels are order 2
    x, w1, w2, bias, _ = make_args(cfg, torch.float64, seed=seed)
    geo = geometry(cfg)

    def op(x, w1, w2, bias=None):
        with physkernels.use_backend(backend):
            return cg2d(x, w1, w2, bias, *geo)

    def ref(x, w1, w2, bias=None):
        return reference_cg2d(x, w1, w2, None, bias, *geo)

    args = [x, w1, w2] + ([bias] if bias is not None else [])
    check_on_gpu(op, ref, args, dtype, names=NAMES_2[:len(args)])


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_cg2d_paper_layer_and_channels_last(backend):
    """CG(3, 3, 64, 1, 1, 1)-sized layer on a CIFAR-sized batch, channels_last input included."""
    cfg = dict(batch=8, c_in=16, c_out=32, cg=16, h=32, w=32, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
               dilation=(1, 1), groups=1, order=2, bias=True)
    x, w1, w2, bias, _ = make_args(cfg, seed=5)
    for layout in (torch.contiguous_format, torch.channels_last):
        check_on_gpu(with_backend(lambda x, *w: cg2d(x.contiguous(memory_format=layout), *w, *geometry(cfg)), backend),
                     lambda x, w1, w2, b: reference_cg2d(x, w1, w2, None, b, *geometry(cfg)), [x, w1, w2, bias],
                     torch.float32, names=NAMES_2)


@pytest.mark.parametrize("backend", [b for b in GPU_BACKENDS if torch.float64 in DTYPES[b]])
def test_cg2d_gradcheck_and_opcheck(backend):
    cfg = dict(batch=2, c_in=2, c_out=3, cg=2, h=5, w=4, kernel=(2, 2), stride=(2, 1), padding=(1, 0),
               dilation=(1, 2), groups=1, order=2, bias=True)
    x, w1, w2, bias, _ = to_gpu(make_args(cfg), torch.float64)
    s, p, d, g = geometry(cfg)
    tensors = [t.requires_grad_() for t in (x, w1, w2, bias)]
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda *t: cg2d(*t, s, p, d, g), tensors, fast_mode=True)
        torch.library.opcheck(torch.ops.physkernels.cg2d.default,
                              (x, w1, w2, None, bias, list(s), list(p), list(d), g))


# ---------------------------------------------------------------------------------------------------- Taylor
@pytest.mark.parametrize("backend,dtype", CASES)
def test_taylor_matches_reference(backend, dtype):
    gen = torch.Generator().manual_seed(9)
    shapes = [(1, 1), (2, 3), (5, 2), (8, 4), (13, 2), (49, 2)] + ([(20, 3)] if backend == "cuda" else [])
    for i, (n, order) in enumerate(shapes):
        out, batch = int(torch.randint(1, 12, (1,), generator=gen)), int(torch.randint(1, 300, (1,), generator=gen))
        args = taylor_args(n, order, out, batch, seed=50 + i, bias=i % 3 != 0)
        check_on_gpu(with_backend(lambda x, w, b: taylor_linear(x, w, b, order), backend),
                     lambda x, w, b: reference_taylor_linear(x, w, b, order), args, dtype,
                     names=["x", "weight", "bias"][:2 + (args[2] is not None)])


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_kernels_span_several_blocks_of_every_tiled_dimension(backend):
    """Shapes with several blocks along every tiled axis of the Taylor and CG2d kernels (outputs, samples, terms;
    output channels, positions, pixels): a kernel that ignores a block index gets whole tiles wrong."""
    args = taylor_args(10, 2, 150, 300, seed=61)  # 150 outputs, 300 samples, 65 terms
    check_on_gpu(with_backend(lambda x, w, b: taylor_linear(x, w, b, 2), backend),
                 lambda x, w, b: reference_taylor_linear(x, w, b, 2), args, torch.float32,
                 names=["x", "weight", "bias"])
    cfg = dict(batch=3, c_in=6, c_out=160, cg=3, h=13, w=11, kernel=(2, 3), stride=(1, 1), padding=(1, 0),
               dilation=(1, 1), groups=2, order=2, bias=True)  # 80 output channels per group, 3 x 14 x 9 positions
    x, w1, w2, bias, _ = make_args(cfg, seed=7)
    check_on_gpu(with_backend(lambda x, *w: cg2d(x, *w, *geometry(cfg)), backend),
                 lambda x, w1, w2, b: reference_cg2d(x, w1, w2, None, b, *geometry(cfg)), [x, w1, w2, bias],
                 torch.float32, names=NAMES_2)


def test_taylor_auto_runs_triton_in_float32_and_cuda_in_float64():
    from physkernels.ops.taylor_linear import op

    assert op.dispatcher.resolve("cuda", dtype=torch.float32) == "triton"
    assert op.dispatcher.resolve("cuda", dtype=torch.float64) == "cuda"


@pytest.mark.parametrize("backend", [b for b in GPU_BACKENDS if torch.float64 in DTYPES[b]])
def test_taylor_gradcheck_and_opcheck(backend):
    x, w, b = to_gpu(taylor_args(3, 3, 2, 5, seed=3), torch.float64)
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda *a: taylor_linear(*a, 3),
                                        (x.requires_grad_(), w.requires_grad_(), b.requires_grad_()))
        torch.library.opcheck(torch.ops.physkernels.taylor_linear.default, (x, w, b, 3))


# ---------------------------------------------------------------------------------------------------- layers
def test_layers_train_on_the_gpu_like_on_the_cpu():
    """Each drop-in layer: one forward/backward on the GPU (auto backend) equals the same layer on the CPU."""
    torch.manual_seed(0)
    layers = [(pnn.MPOLinear((4, 7, 7, 4), (4, 4, 4, 4), 8), torch.randn(37, 784)),
              (pnn.CG2d(3, 8, 3, padding=1), torch.randn(5, 3, 16, 16)),
              (pnn.TaylorLinear(10, 4, 3), torch.randn(33, 10))]
    for layer, x in layers:
        results = []
        for module, device in ((layer, "cpu"), (copy.deepcopy(layer).cuda(), "cuda")):
            xin = x.to(device).detach().requires_grad_()
            y = module(xin)
            y.square().sum().backward()
            results.append([y.cpu(), xin.grad.cpu()] + [p.grad.cpu() for p in module.parameters()])
        for a, b in zip(*results):
            torch.testing.assert_close(b, a, atol=2e-3, rtol=2e-3)


# --------------------------------------------------------------------------------------------------- physics
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_nnqft_green_functions_match_reference(backend):
    pts = torch.tensor([[-0.2, 0.1], [0.3, 0.05], [0.0, -0.4]], dtype=torch.float64)
    kw = dict(max_n=4, width=5, n_bags=3, n_nets=500, sigma_w=1.1, sigma_b=0.6, seed=5)
    got = nnqft.green_functions(pts.cuda(), backend=backend, **kw)
    want = nnqft.green_functions(pts, backend="reference", **kw)
    # The kernels evaluate activations in float32 and accumulate in float64 (ensemble.py).
    tol = dict(rtol=1e-4, atol=1e-5 * want.per_bag.abs().max().item())
    torch.testing.assert_close(got.per_bag.cpu(), want.per_bag, **tol)
    for activation in ("erf", "relu", "gauss"):
        out = {b: nnqft.ensemble_outputs(p, 4, 64, sigma_w=1.1, sigma_b=0.6, activation=activation, seed=7,
                                         backend=b).cpu()
               for b, p in ((backend, pts.cuda()), ("reference", pts))}
        torch.testing.assert_close(out[backend], out["reference"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", ["TritonMetropolisEngine", "CudaMetropolisEngine"])
def test_ising_gpu_engine_matches_cpp_bit_for_bit(engine):
    cls = getattr(engines, engine)
    if not (cls.available() and engines.CppMetropolisEngine.available()):
        pytest.skip(f"{engine} or the C++ engine unavailable")
    cpp, gpu = engines.CppMetropolisEngine(16, 0.44, 300, seed=9), cls(16, 0.44, 300, seed=9)
    for steps in (1, 7, 3):
        cpp.run(steps), gpu.run(steps)
    torch.cuda.synchronize()
    assert torch.equal(cpp.words, gpu.words.cpu())


def test_rbm_auto_samples_float64_on_the_gpu_with_torch():
    rbm = random_rbm(4, 3, seed=2)
    W, b, c = (t.detach().cuda() for t in (rbm.W, rbm.b, rbm.c))
    v, h = gibbs(torch.ones(8, 4, dtype=torch.float64, device="cuda"), W, b, c, k=2, seed=1)
    assert v.dtype == h.dtype == torch.float64 and v.is_cuda


@pytest.mark.skipif("triton" not in GPU_BACKENDS, reason="triton unavailable")
def test_rbm_triton_gibbs_samples_the_exact_transitions():
    rbm = random_rbm(4, 3, seed=11)
    n, start = 1 << 16, 6
    v0 = all_binary_states(4, torch.float32)[start].expand(n, 4).contiguous().cuda()
    T, joint = transition_matrix(rbm)
    W, b, c = (t.detach().float().cuda() for t in (rbm.W, rbm.b, rbm.c))
    v1, h1 = gibbs(v0, W, b, c, k=1, seed=5, backend="triton")
    pair = state_index(h1.cpu()) * 16 + state_index(v1.cpu())
    assert_frequencies(torch.bincount(pair, minlength=128), joint[start].flatten(), n)
    v3, _ = gibbs(v0, W, b, c, k=3, seed=6, backend="triton")
    assert_frequencies(torch.bincount(state_index(v3.cpu()), minlength=16), torch.linalg.matrix_power(T, 3)[start], n)
