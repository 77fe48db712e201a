"""Op-level fuzz: every op against its float64 reference formula on random shapes, with every tensor argument passed
as a contiguous tensor or as a strided, expanded (stride 0), transposed or offset view of a larger tensor.

Values and the gradients of every argument are compared; gradients are taken with respect to the tensors the views
were cut from, so a kernel that ignored a view's strides, offset or zero strides gets wrong values or wrong
gradients. Seeded (one seed per configuration, printed on failure) and small enough to run in seconds.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

import physkernels
from physkernels.ops import cg2d, mpo_linear, taylor_linear
from physkernels.ops.cg2d import num_pairs, num_triples, output_size, reference_cg2d
from physkernels.ops.mpo_linear import reference_mpo_linear
from physkernels.ops.taylor_linear import reference_taylor_linear
from physkernels.taylor import monomial_count

VIEWS = ("contiguous", "strided", "expanded", "transposed", "offset")
CONFIGS_PER_OP = 40


def make_view(shape, kind, rng: random.Random, dtype):
    """``(base, view)``: a fresh random leaf ``base`` and a view of it with ``shape`` of the given kind."""
    shape = tuple(shape)
    if kind == "strided" and shape:
        base = torch.randn(*shape[:-1], 2 * shape[-1] + 1, dtype=dtype)
        return base, base[..., 1::2]
    if kind == "expanded" and shape:
        dim = rng.randrange(len(shape))
        base = torch.randn(*shape[:dim], 1, *shape[dim + 1:], dtype=dtype)
        return base, base.expand(shape)
    if kind == "transposed" and len(shape) >= 2:
        base = torch.randn(*shape[:-2], shape[-1], shape[-2], dtype=dtype)
        return base, base.transpose(-1, -2)
    if kind == "offset" and shape:
        base = torch.randn(math.prod(shape) + 5, dtype=dtype)
        return base, base[5:].view(shape)
    base = torch.randn(shape, dtype=dtype)
    return base, base


class Case:
    """Random arguments as views of leaf tensors, re-creatable on fresh leaves for each evaluation."""

    def __init__(self, shapes: dict, rng: random.Random, dtype=torch.float64):
        self.kinds = {name: rng.choice(VIEWS) for name in shapes}
        self.seed = rng.randrange(2**31)
        torch.manual_seed(self.seed)
        self.bases, self.views = {}, {}
        for name, shape in shapes.items():
            if shape is None:
                self.bases[name] = self.views[name] = None
                continue
            self.bases[name], _ = make_view(shape, self.kinds[name], random.Random(self.seed + len(name)), dtype)
        self.shapes = shapes

    def leaves(self, dtype):
        """Fresh leaves (cast to ``dtype``) and the views of them the op receives."""
        leaves, views = {}, {}
        for name, base in self.bases.items():
            if base is None:
                leaves[name] = views[name] = None
                continue
            leaf = base.detach().to(dtype).requires_grad_(True)
            leaves[name] = leaf
            views[name] = _same_view(leaf, self.kinds[name], self.shapes[name], self.seed + len(name))
        return leaves, views

    def describe(self):
        return f"seed={self.seed} shapes={self.shapes} views={self.kinds}"


def _same_view(leaf, kind, shape, seed):
    """The view of ``leaf`` that :func:`make_view` cut from a base of this shape."""
    shape = tuple(shape)
    if kind == "strided" and shape:
        return leaf[..., 1::2]
    if kind == "expanded" and shape:
        return leaf.expand(shape)
    if kind == "transposed" and len(shape) >= 2:
        return leaf.transpose(-1, -2)
    if kind == "offset" and shape:
        return leaf[5:].view(shape)
    return leaf


def compare(case: Case, op, reference, dtype):
    """op(views) in ``dtype`` against reference(views) in float64: values and the gradient of every leaf."""
    leaves, views = case.leaves(dtype)
    y = op(**views)
    ref_leaves, ref_views = case.leaves(torch.float64)
    y_ref = reference(**ref_views)
    cotangent = torch.randn(y_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(case.seed))
    (y * cotangent.to(dtype)).sum().backward()
    (y_ref * cotangent).sum().backward()
    # float64: rounding only; float32: a normwise bound tied to the reduction lengths of these small problems
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    pairs = [("y", y.detach(), y_ref.detach())] + [
        (name, leaves[name].grad, ref_leaves[name].grad) for name in leaves if leaves[name] is not None]
    for name, got, want in pairs:
        assert got is not None, f"{name}: no gradient ({case.describe()})"
        assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} vs {tuple(want.shape)}"
        error = (got.double() - want).norm() / want.norm().clamp_min(1e-30)
        assert error <= tol, f"{name}: relative error {error:.3e} > {tol} ({case.describe()})"


def mpo_cases(n_cases, seed):
    rng = random.Random(seed)
    for _ in range(n_cases):
        n = rng.randint(2, 4)
        in_shape = [rng.randint(1, 5) for _ in range(n)]
        out_shape = [rng.randint(1, 5) for _ in range(n)]
        ranks = [1] + [rng.randint(1, 4) for _ in range(n - 1)] + [1]
        batch = rng.choice([1, 2, 3, 7, 17, 40])
        lead = [batch] if rng.random() < 0.7 else [2, batch]
        shapes = {"x": lead + [math.prod(in_shape)], "bias": [math.prod(out_shape)] if rng.random() < 0.7 else None}
        for k in range(n):
            shapes[f"core{k}"] = [ranks[k], in_shape[k], out_shape[k], ranks[k + 1]]
        yield Case(shapes, rng), n


def cg2d_cases(n_cases, seed, third_order=True):
    rng = random.Random(seed)
    made = 0
    while made < n_cases:
        groups = rng.choice([1, 1, 2, 3])
        cg, og = rng.randint(1, 3), rng.randint(1, 3)
        kh, kw = rng.randint(1, 3), rng.randint(1, 3)
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        h, w = rng.randint(1, 9), rng.randint(1, 9)
        if (dilation[0] * (kh - 1) + 1 > h + 2 * padding[0]) or (dilation[1] * (kw - 1) + 1 > w + 2 * padding[1]):
            continue
        assert output_size(h, kh, stride[0], padding[0], dilation[0]) >= 1
        p = kh * kw
        order3 = third_order and rng.random() < 0.3
        shapes = {"x": [rng.choice([1, 2, 3]), groups * cg, h, w], "weight": [groups * og, cg, kh, kw],
                  "weight2": [groups * og, cg, num_pairs(p)],
                  "weight3": [groups * og, cg, num_triples(p)] if order3 else None,
                  "bias": [groups * og] if rng.random() < 0.7 else None}
        made += 1
        yield Case(shapes, rng), dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def taylor_cases(n_cases, seed):
    rng = random.Random(seed)
    for _ in range(n_cases):
        n, order, out = rng.randint(1, 7), rng.randint(1, 4), rng.randint(1, 9)
        batch = rng.choice([1, 2, 5, 17, 33])
        lead = [batch] if rng.random() < 0.7 else [2, batch]
        shapes = {"x": lead + [n], "weight": [out, monomial_count(n, order)],
                  "bias": [out] if rng.random() < 0.7 else None}
        yield Case(shapes, rng), order


def _mpo_call(fn, n):
    return lambda x, bias, **cores: fn(x, [cores[f"core{k}"] for k in range(n)], bias)


@pytest.mark.parametrize("backend", ["cpp", "auto"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fuzz_mpo_linear(backend, dtype):
    with physkernels.use_backend(backend):
        for case, n in mpo_cases(CONFIGS_PER_OP, seed=11):
            compare(case, _mpo_call(mpo_linear, n), _mpo_call(reference_mpo_linear, n), dtype)


@pytest.mark.parametrize("backend", ["cpp", "auto"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fuzz_cg2d(backend, dtype):
    with physkernels.use_backend(backend):
        for case, geometry in cg2d_cases(CONFIGS_PER_OP, seed=12):
            compare(case, lambda x, weight, weight2, weight3, bias: cg2d(x, weight, weight2, bias, **geometry,
                                                                         weight3=weight3),
                    lambda x, weight, weight2, weight3, bias: reference_cg2d(x, weight, weight2, weight3, bias,
                                                                             **geometry), dtype)


@pytest.mark.parametrize("backend", ["cpp", "auto"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fuzz_taylor_linear(backend, dtype):
    with physkernels.use_backend(backend):
        for case, order in taylor_cases(CONFIGS_PER_OP, seed=13):
            compare(case, lambda x, weight, bias: taylor_linear(x, weight, bias, order),
                    lambda x, weight, bias: reference_taylor_linear(x, weight, bias, order), dtype)


@pytest.mark.slow
@pytest.mark.triton
def test_fuzz_triton_kernels():
    """The Triton kernels (interpreter on CPU) get the same views; fewer, small configurations (slow there)."""
    if "triton" not in physkernels.available_backends("cpu"):
        pytest.skip("triton is not available on CPU (needs TRITON_INTERPRET=1 and triton installed)")
    with physkernels.use_backend("triton"):
        for case, order in taylor_cases(4, seed=21):
            compare(case, lambda x, weight, bias: taylor_linear(x, weight, bias, order),
                    lambda x, weight, bias: reference_taylor_linear(x, weight, bias, order), torch.float32)
        for case, geometry in cg2d_cases(4, seed=22, third_order=False):
            compare(case, lambda x, weight, weight2, weight3, bias: cg2d(x, weight, weight2, bias, **geometry),
                    lambda x, weight, weight2, weight3, bias: reference_cg2d(x, weight, weight2, None, bias,
                                                                             **geometry), torch.float32)
