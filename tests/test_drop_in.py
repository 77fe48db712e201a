"""What a user swapping nn.Linear / nn.Conv2d / tensorly-torch for our layers relies on: kernel arguments of any
layout, IEEE special values, unaliased custom-op outputs, thread-local backend choice, second derivatives,
torch.func, empty and unbatched inputs, feature-count constructors, pruning and torch.compile without warnings."""

from __future__ import annotations

import copy
import math
import threading
import warnings

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

import physkernels
from physkernels._kernel_args import Out, Strided, launch
from physkernels.nn import CG2d, MPOConv2d, MPOLinear, TaylorLinear
from physkernels.ops import cg2d, taylor_linear
from physkernels.ops.cg2d import num_pairs, reference_cg2d
from physkernels.ops.mpo_linear import reference_mpo_linear
from physkernels.ops.taylor_linear import reference_taylor_linear
from physkernels.taylor import monomial_count
from devices import needs_gpu

CPU_BACKENDS = ["cpp", "reference"]


def _close(a, b, tol=1e-10):
    assert a.shape == b.shape
    assert (a - b).norm() <= tol * max(1.0, float(b.norm()))


# ----------------------------------------------------------------------------------------------- kernel arguments
def test_launch_copies_inputs_checks_outputs_dtype_and_device():
    seen = {}

    def kernel(pointer, output, strided, absent, pointers, number):
        seen.update(pointer=pointer, output=output, strided=strided, absent=absent, pointers=pointers, n=number)

    base = torch.arange(12.0)
    view = base[::2]
    out = torch.empty(3)
    launch(kernel, view, Out(out), Strided(view), None, [base, Out(out)], 7)
    assert seen["pointer"] != view.data_ptr()  # a contiguous copy, not the strided view's storage
    assert seen["output"] == out.data_ptr() and seen["strided"] == view.data_ptr() and seen["absent"] == 0
    assert seen["pointers"] == [base.data_ptr(), out.data_ptr()] and seen["n"] == 7
    with pytest.raises(ValueError, match="contiguous"):
        launch(kernel, view, Out(base[::2]), None, None, [], 0)
    with pytest.raises(TypeError, match="float64"):
        launch(kernel, view, Out(out), None, None, [], 0, dtype=torch.float64)
    with pytest.raises(ValueError, match="meta"):
        launch(kernel, view, Out(torch.empty(3, device="meta")), None, None, [], 0)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_cg2d_bias_of_any_layout(backend):
    """A strided bias (``arange(6.)[::2]``), an expanded one and an offset one give the reference's result."""
    if backend not in physkernels.available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    torch.manual_seed(0)
    x, w1, w2 = torch.randn(2, 3, 5, 5), torch.randn(3, 3, 2, 2), torch.randn(3, 3, num_pairs(4))
    for bias in (torch.arange(6.0)[::2], torch.tensor([2.5]).expand(3), torch.randn(8)[5:]):
        with physkernels.use_backend(backend):
            y = cg2d(x, w1, w2, bias)
        _close(y, reference_cg2d(x, w1, w2, None, bias), 1e-5)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_taylor_linear_bias_of_any_layout(backend):
    """The bias temporary of a non-contiguous bias must live until the kernel has read it."""
    if backend not in physkernels.available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    torch.manual_seed(1)
    x, weight = torch.randn(33, 5), torch.randn(4, monomial_count(5, 2))
    for bias in (torch.randn(8)[::2], torch.tensor([1.5]).expand(4), torch.randn(9)[5:]):
        with physkernels.use_backend(backend):
            y = taylor_linear(x, weight, bias, 2)
        _close(y, reference_taylor_linear(x, weight, bias, 2), 1e-5)


# ----------------------------------------------------------------------------------------------- IEEE values
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_taylor_linear_keeps_infinities(dtype):
    """inf stays inf (the compensated sums must not turn inf - inf into NaN); NaN only where the reference has it;
    the same in every gradient."""
    cases = [(torch.tensor([[math.inf, 1.0]]), 1), (torch.tensor([[1e20, 1e20]]), 2),
             (torch.tensor([[-math.inf, 2.0], [3.0, 0.5]]), 2), (torch.tensor([[1e30, 2e30, 2.0]]), 3)]
    for x, order in cases:
        x = x.to(dtype)
        weight = torch.ones(2, monomial_count(x.shape[1], order), dtype=dtype)
        weight[1, ::2] = 0.5
        with physkernels.use_backend("cpp"):
            y = taylor_linear(x, weight, None, order)
        y_ref = reference_taylor_linear(x, weight, None, order)
        assert torch.equal(torch.isnan(y), torch.isnan(y_ref)), (x, y, y_ref)
        finite = torch.isfinite(y_ref)
        assert torch.equal(y[~finite & ~torch.isnan(y_ref)], y_ref[~finite & ~torch.isnan(y_ref)])
        _close(y[finite].double(), y_ref[finite].double(), 1e-5)
    # gradients of a plain inf input with a finite cotangent: dW carries the inf feature, dx stays finite
    x = torch.tensor([[math.inf, 1.0]], dtype=dtype, requires_grad=True)
    weight = torch.ones(1, 2, dtype=dtype, requires_grad=True)
    grads = {}
    for backend in ("cpp", "reference"):
        with physkernels.use_backend(backend):
            grads[backend] = torch.autograd.grad(taylor_linear(x, weight, None, 1).sum(), (x, weight))
    for got, want in zip(grads["cpp"], grads["reference"]):
        assert torch.equal(got, want)


# ----------------------------------------------------------------------------------------------- aliasing
@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_cg2d_custom_op_outputs_never_alias(backend):
    """C_out * C_in / groups == 1 made the Triton backward return dW1 and dW2 as views of one buffer."""
    if backend not in physkernels.available_backends("cpu"):
        pytest.skip(f"{backend} unavailable")
    torch.manual_seed(2)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    w1, w2, bias = torch.randn(1, 1, 2, 2, dtype=torch.float64), torch.randn(1, 1, 10, dtype=torch.float64), \
        torch.randn(1, dtype=torch.float64)
    grad = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    with physkernels.use_backend(backend):
        needs = [True, True, True, False, True, False, False, False, False]
        outs = torch.ops.physkernels.cg2d_backward(grad, needs, x, w1, w2, None, bias, [1, 1], [0, 0], [1, 1], 1)
        storages = [t.untyped_storage().data_ptr() for t in outs if t.numel()]
        assert len(storages) == len(set(storages))
        torch.library.opcheck(torch.ops.physkernels.cg2d_backward.default,
                              (grad, needs, x, w1, w2, None, bias, [1, 1], [0, 0], [1, 1], 1))
        args = [t.requires_grad_() for t in (x, w1, w2)]
        y = torch.ops.physkernels.cg2d(*args, None, bias, [1, 1], [0, 0], [1, 1], 1)
        torch.autograd.grad(y, args, grad)


# ----------------------------------------------------------------------------------------------- backend choice
def test_use_backend_is_local_to_a_thread():
    """A context entered in one thread does not change another's backend; interleaved exits restore each
    thread's own previous choice and leave the process default alone."""
    physkernels.set_backend("auto")
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with physkernels.use_backend("reference"):
            seen["inside"] = physkernels.get_backend()
            entered.set()
            release.wait(10)
        seen["after"] = physkernels.get_backend()

    thread = threading.Thread(target=worker)
    thread.start()
    assert entered.wait(10)
    assert physkernels.get_backend() == "auto"  # the other thread's context is invisible here
    with physkernels.use_backend("cpp"):
        release.set()  # the worker exits its context while this one is still open
        thread.join(10)
        assert physkernels.get_backend() == "cpp"
    assert seen == {"inside": "reference", "after": "auto"}
    assert physkernels.get_backend() == "auto"


# ----------------------------------------------------------------------------------------------- second derivatives
def _layers():
    torch.manual_seed(4)
    return {
        "MPOLinear": (MPOLinear((2, 3), (3, 2), bond_dim=2, dtype=torch.float64), torch.randn(3, 6)),
        "CG2d": (CG2d(2, 3, 2, stride=1, padding=1, dtype=torch.float64), torch.randn(2, 2, 3, 3)),
        "CG2d-order3": (CG2d(2, 2, 2, order=3, dtype=torch.float64), torch.randn(2, 2, 3, 3)),
        "TaylorLinear": (TaylorLinear(3, 2, order=3, dtype=torch.float64), torch.randn(4, 3)),
    }


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", ["MPOLinear", "CG2d", "CG2d-order3", "TaylorLinear"])
def test_layers_are_twice_differentiable(name, backend):
    """gradgradcheck in float64, and a gradient penalty (create_graph, then backward) that matches the plain-torch
    reference computation."""
    layer, x = _layers()[name]
    x = x.double().requires_grad_()
    params = [p for p in layer.parameters()]

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], ps)), (x,))

    with physkernels.use_backend(backend):
        assert torch.autograd.gradgradcheck(f, (x, *params), eps=1e-6, atol=1e-5)

        def penalty():
            layer.zero_grad()
            (gx,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
            gx.square().sum().backward()
            return [p.grad.clone() for p in params]

        got = penalty()
    with physkernels.use_backend("reference"):
        want = penalty()
    for a, b in zip(got, want):
        _close(a, b)


def test_custom_ops_are_twice_differentiable():
    """The custom ops (what torch.compile and export run) support double backward too."""
    torch.manual_seed(5)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, monomial_count(4, 2), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: torch.ops.physkernels.taylor_linear(x, w, None, 2), (x, w))
    cores = [torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True),
             torch.randn(2, 2, 1, 1, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradgradcheck(lambda x, a, b: torch.ops.physkernels.mpo_linear(x, [a, b], None),
                                        (x, *cores))
    xi = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(2, 2, num_pairs(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda x, a, b: torch.ops.physkernels.cg2d(x, a, b, None, None, [1, 1], [0, 0], [1, 1], 1), (xi, w1, w2))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", ["MPOLinear", "CG2d", "TaylorLinear"])
def test_per_sample_gradients_with_torch_func(name, backend):
    """vmap(grad(functional_call)) gives each sample's gradient, as a loop over samples does."""
    layer, x = _layers()[name]
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(p, sample):
        return torch.func.functional_call(layer, p, (sample.unsqueeze(0),)).square().sum()

    with physkernels.use_backend(backend):
        batched = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x.double())
        for i in range(x.shape[0]):
            single = torch.func.grad(loss)(params, x[i].double())
            for k in params:
                _close(batched[k][i], single[k])
            manual = layer(x[i:i + 1].double()).square().sum()
            for k, g in zip(params, torch.autograd.grad(manual, list(layer.parameters()))):
                _close(single[k], g)


# ----------------------------------------------------------------------------------------------- batch shapes
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_and_unbatched_inputs_behave_like_torch(backend):
    torch.manual_seed(6)
    cases = [(MPOLinear(12, 6, bond_dim=2), nn.Linear(12, 6), (12,)),
             (TaylorLinear(5, 3, order=2), nn.Linear(5, 3), (5,)),
             (CG2d(2, 3, 2), nn.Conv2d(2, 3, 2), (2, 5, 5)),
             (CG2d(2, 3, 2, order=1), nn.Conv2d(2, 3, 2), (2, 5, 5)),
             (MPOConv2d(2, 4, 3, bond_dim=2), nn.Conv2d(2, 4, 3), (2, 5, 5))]
    with physkernels.use_backend(backend):
        for layer, twin, sample_shape in cases:
            empty = torch.randn(0, *sample_shape, requires_grad=True)
            y, y_twin = layer(empty), twin(empty)
            assert y.shape == y_twin.shape, type(layer).__name__
            y.sum().backward()
            assert empty.grad.shape == empty.shape and all(
                p.grad is not None and not p.grad.any() for p in layer.parameters())
            sample = torch.randn(sample_shape)
            unbatched = layer(sample)
            assert unbatched.shape == twin(sample).shape, type(layer).__name__
            _close(unbatched, layer(sample.unsqueeze(0)).squeeze(0), 1e-6)


# ----------------------------------------------------------------------------------------------- constructors
def test_mpolinear_from_feature_counts():
    layer = MPOLinear(784, 256, bond_dim=8)
    assert layer.in_shape == (4, 7, 7, 4) and layer.out_shape == (4, 4, 4, 4) and layer.ranks == (8, 8, 8)
    assert layer(torch.randn(2, 784)).shape == (2, 256)
    assert MPOLinear(64, (2, 2, 4), bond_dim=2).in_shape == (4, 4, 4)
    assert len(MPOLinear(64, 16, bond_dim=2, num_cores=2).cores) == 2
    with pytest.raises(TypeError, match="in_shape"):
        MPOLinear(784.0, 256, bond_dim=8)


def test_rank_as_a_fraction_of_the_full_rank():
    full = physkernels.mpo.max_ranks((4, 4), (4, 4))
    assert MPOLinear((4, 4), (4, 4), bond_dim=0.5).ranks == tuple(max(1, round(0.5 * r)) for r in full)
    assert MPOLinear((4, 4), (4, 4), bond_dim=1.0).ranks == full
    with pytest.raises(ValueError, match="fraction"):
        MPOLinear((4, 4), (4, 4), bond_dim=1.5)


def test_from_linear_warns_when_nothing_is_compressed():
    with pytest.warns(UserWarning, match="no compression"):
        layer = MPOLinear.from_linear(nn.Linear(97, 13), bond_dim=4)
    assert layer.compression_ratio >= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MPOLinear.from_linear(nn.Linear(256, 256), bond_dim=4)  # compresses: silent


def test_compress_has_a_default_bond_dim():
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    report = physkernels.compress(model)
    from physkernels.nn.compress import DEFAULT_BOND_DIM

    assert report.layers[0].replaced and max(report.layers[0].ranks) == DEFAULT_BOND_DIM


# ----------------------------------------------------------------------------------------------- pruning, compile
def test_pruning_a_core():
    torch.manual_seed(7)
    layer = MPOLinear((4, 4), (4, 4), bond_dim=3)
    prune.l1_unstructured(layer.cores, name="0", amount=0.5)
    mask = layer.cores.get_buffer("0_mask")
    assert int(mask.sum()) == mask.numel() // 2
    x = torch.randn(5, 16)
    orig = [layer.cores.get_parameter("0_orig")] + [layer.cores[k] for k in range(1, 2)]
    _close(layer(x), reference_mpo_linear(x, [orig[0] * mask, orig[1]], layer.bias), 1e-6)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(2):  # the pruned core is recomputed from its updated original on every forward
        optimizer.zero_grad()
        layer(x).square().sum().backward()
        optimizer.step()
    assert torch.equal(layer.to_dense(), reference_mpo_linear(torch.eye(16), [
        layer.cores.get_parameter("0_orig") * mask, layer.cores[1]]).t())
    assert not (layer.cores[0] * (1 - mask)).any()


def test_torch_compile_of_mpo_linear_gives_no_warning():
    torch._dynamo.reset()
    getattr(torch._dynamo.utils, "warn_once_cache", set()).clear()
    layer = MPOLinear((2, 3), (3, 2), bond_dim=2)
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(4, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = compiled(x)
    assert not [w for w in caught if "lru_cache" in str(w.message)], [str(w.message) for w in caught]
    _close(y, layer(x), 1e-5)


@pytest.mark.gpu
@needs_gpu
def test_layers_train_on_the_gpu_like_on_the_cpu():
    """Each drop-in layer: one forward/backward on the GPU (auto backend) equals the same layer on the CPU."""
    torch.manual_seed(0)
    layers = [(MPOLinear((4, 7, 7, 4), (4, 4, 4, 4), 8), torch.randn(37, 784)),
              (CG2d(3, 8, 3, padding=1), torch.randn(5, 3, 16, 16)),
              (TaylorLinear(10, 4, 3), torch.randn(33, 10))]
    for layer, x in layers:
        results = []
        for module, device in ((layer, "cpu"), (copy.deepcopy(layer).cuda(), "cuda")):
            xin = x.to(device).detach().requires_grad_()
            y = module(xin)
            y.square().sum().backward()
            results.append([y.cpu(), xin.grad.cpu()] + [p.grad.cpu() for p in module.parameters()])
        for a, b in zip(*results):
            torch.testing.assert_close(b, a, atol=2e-3, rtol=2e-3)


def test_typed_kernel_names_the_dtype_it_cannot_run():
    from physkernels._kernel_args import typed_kernel

    class Module:
        forward_f32, forward_f64 = "f32 kernel", "f64 kernel"

    assert typed_kernel(Module, "forward", torch.float64) == "f64 kernel"
    with pytest.raises(TypeError, match="float16"):
        typed_kernel(Module, "forward", torch.float16)
