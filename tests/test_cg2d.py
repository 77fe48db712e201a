"""CG2d: every backend against the independent float64 reference (values and all gradients), plus the layer."""

import os
import random
import subprocess
import sys

import pytest
import torch
from torch import nn

import physkernels
from physkernels.backends import available_backends
from physkernels.nn import CG2d
from physkernels.ops.cg2d import cg2d, num_pairs, num_triples, reference_cg2d, unfold_cg2d
from physkernels.testing import check_against_reference
from devices import check_on_device, device_backend, device_backend_dtype, on_device, with_backend

CPU_BACKENDS = [b for b in ("cpp", "triton") if b in available_backends("cpu")]
NAMES_2 = ["x", "weight", "weight2", "bias"]
NAMES_3 = ["x", "weight", "weight2", "bias", "weight3"]


def random_config(seed: int) -> dict:
    """A tiny random layer + input over the specified ranges; every 7th has output size 1, every 4th is order 3."""
    rng = random.Random(seed)
    kh, kw = rng.randint(1, 3), rng.randint(1, 3)
    sh, sw = rng.randint(1, 3), rng.randint(1, 3)
    dh, dw = rng.randint(1, 3), rng.randint(1, 3)
    ph, pw = rng.randint(0, 2), rng.randint(0, 2)
    groups_kind = rng.choice(["one", "two", "depthwise"])
    cg = rng.randint(1, 3)
    if groups_kind == "one":
        groups, c_in, c_out = 1, cg, rng.randint(1, 5)
    elif groups_kind == "two":
        groups, c_in, c_out = 2, 2 * cg, 2 * rng.randint(1, 3)
    else:
        c_in = rng.randint(1, 4)
        groups, cg, c_out = c_in, 1, c_in * rng.randint(1, 2)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if seed % 7 == 0:  # output size exactly 1 along both axes
        h, w = max(1, span_h - 2 * ph), max(1, span_w - 2 * pw)
    else:
        h = max(span_h - 2 * ph, 1) + rng.randint(0, 5)
        w = max(span_w - 2 * pw, 1) + rng.randint(0, 5)
        h, w = h + (h % 2 == 0), w + (w % 2 == 0)  # odd sizes
    return dict(batch=rng.randint(1, 3), c_in=c_in, c_out=c_out, cg=cg, h=h, w=w, kernel=(kh, kw),
                stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups, order=3 if seed % 4 == 0 else 2,
                bias=seed % 5 != 0)


def make_args(cfg: dict, dtype=torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=dtype) * scale

    kh, kw = cfg["kernel"]
    P = kh * kw
    x = rnd(cfg["batch"], cfg["c_in"], cfg["h"], cfg["w"])
    w1 = rnd(cfg["c_out"], cfg["cg"], kh, kw)
    w2 = rnd(cfg["c_out"], cfg["cg"], num_pairs(P), scale=0.5)
    bias = rnd(cfg["c_out"]) if cfg["bias"] else None
    w3 = rnd(cfg["c_out"], cfg["cg"], num_triples(P), scale=0.3) if cfg["order"] == 3 else None
    return x, w1, w2, bias, w3


def skip_unsupported(backend, cfg):
    if backend == "triton" and cfg["order"] == 3:
        pytest.skip("triton implements order 2")


def geometry(cfg):
    return cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"]


def as_functions(cfg, backend: str):
    """(op, reference) taking (x, w1, w2, bias[, w3]) so check_against_reference differentiates every tensor."""
    geo = geometry(cfg)

    def op(x, w1, w2, bias=None, w3=None):
        with physkernels.use_backend(backend):
            return cg2d(x, w1, w2, bias, *geo, weight3=w3)

    def ref(x, w1, w2, bias=None, w3=None):
        return reference_cg2d(x, w1, w2, w3, bias, *geo)

    return op, ref


def check_backend(cfg, backend, dtype=torch.float64, atol=1e-9, rtol=1e-7, seed=0):
    x, w1, w2, bias, w3 = make_args(cfg, dtype, seed)
    op, ref = as_functions(cfg, backend)
    if bias is None:  # keep positions: pass bias=None through a wrapper so only tensors are differentiated
        args = [x, w1, w2] + ([] if w3 is None else [w3])
        wrap = (lambda f: (lambda x, w1, w2, w3=None: f(x, w1, w2, None, w3)))
        op, ref = wrap(op), wrap(ref)
        names = ["x", "weight", "weight2"] + ([] if w3 is None else ["weight3"])
    else:
        args = [x, w1, w2, bias] + ([] if w3 is None else [w3])
        names = NAMES_3 if w3 is not None else NAMES_2
    check_against_reference(op, ref, args, atol=atol, rtol=rtol, names=names)


# ---------------------------------------------------------------------------------------------------------------
# Values and all gradients against the float64 reference, >= 200 random configurations
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="physkernels._C not built")
@pytest.mark.parametrize("seed", range(220))
def test_cpp_matches_reference(seed):
    check_backend(random_config(seed), "cpp", seed=seed)


def test_random_configs_cover_the_issue_ranges():
    cfgs = [random_config(s) for s in range(220)]
    assert {c["kernel"][0] for c in cfgs} == {1, 2, 3} and any(c["kernel"][0] != c["kernel"][1] for c in cfgs)
    for key in ("stride", "dilation"):
        assert {v for c in cfgs for v in c[key]} == {1, 2, 3}
    assert {v for c in cfgs for v in c["padding"]} == {0, 1, 2}
    assert {c["groups"] == c["c_in"] for c in cfgs} == {True, False} and any(c["groups"] == 2 for c in cfgs)
    assert {c["batch"] for c in cfgs} == {1, 2, 3} and {c["order"] for c in cfgs} == {2, 3}
    outs = []
    for c in cfgs:
        x, w1, *_ = make_args(c)
        outs.append(reference_cg2d(x, w1, torch.zeros(c["c_out"], c["cg"], num_pairs(w1.shape[2] * w1.shape[3]),
                                                      dtype=x.dtype), None, None, *geometry(c)).shape[2:])
    assert any(o == (1, 1) for o in outs)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 8, 12])
def test_reference_backend_matches_the_unfold_formula(seed):
    """The reference backend (direct sum forward, ``torch.func.vjp`` backward) against the independent unfold ->
    products -> matmul formulation: values and every gradient."""
    cfg = random_config(seed)
    x, w1, w2, bias, w3 = make_args(cfg)
    geo = geometry(cfg)
    args = [t for t in (x, w1, w2, bias, w3) if t is not None]
    present = [t is not None for t in (bias, w3)]

    def call(fn):
        def f(x, w1, w2, *rest):
            it = iter(rest)
            b, t3 = (next(it) if p else None for p in present)
            return fn(x, w1, w2, t3, b, *geo)
        return f

    def reference_backend(x, w1, w2, w3, bias, *geo):
        with physkernels.use_backend("reference"):
            return cg2d(x, w1, w2, bias, *geo, weight3=w3)

    check_against_reference(call(reference_backend), call(unfold_cg2d), args)


def test_reference_equals_the_written_out_sum():
    """One 2x2 patch by hand: y = b + sum_p w1_p x_p + sum_{p<=q} w2_pq x_p x_q."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]], dtype=torch.float64)
    w1 = torch.tensor([[[[0.5, -1.0], [2.0, 0.25]]]], dtype=torch.float64)
    w2 = torch.arange(1.0, 11.0, dtype=torch.float64).reshape(1, 1, 10)
    v = [1.0, 2.0, 3.0, 5.0]
    pairs = [(p, q) for p in range(4) for q in range(p, 4)]
    want = 0.7 + sum(a * b for a, b in zip([0.5, -1.0, 2.0, 0.25], v)) + sum(
        (k + 1) * v[p] * v[q] for k, (p, q) in enumerate(pairs))
    got = reference_cg2d(x, w1, w2, None, torch.tensor([0.7], dtype=torch.float64))
    assert got.shape == (1, 1, 1, 1) and abs(got.item() - want) < 1e-12
    if "cpp" in CPU_BACKENDS:
        with physkernels.use_backend("cpp"):
            assert abs(cg2d(x, w1, w2, torch.tensor([0.7], dtype=torch.float64)).item() - want) < 1e-12


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="physkernels._C not built")
@pytest.mark.parametrize("padding", [(0, 0), (1, 1), (0, 2)])
@pytest.mark.parametrize("width", [8, 11])
def test_cpp_taylornet_stride_two_layers(padding, width):
    """CG(2,2,c,2,2), the paper's main layer, takes the kernels' paired-column path (both kernel columns from one
    input segment); with padding, runs at the image border take the general path."""
    cfg = dict(batch=2, c_in=5, c_out=7, cg=5, h=9, w=width, kernel=(2, 2), stride=(2, 2), padding=padding,
               dilation=(1, 1), groups=1, order=2, bias=True)
    check_backend(cfg, "cpp", seed=width)


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="physkernels._C not built")
@pytest.mark.parametrize("seed", [5, 6, 9, 16])
def test_cpp_float32_close_to_float64_reference(seed):
    cfg = random_config(seed)
    x, w1, w2, bias, w3 = make_args(cfg, torch.float32, seed)
    with physkernels.use_backend("cpp"):
        y = cg2d(x, w1, w2, bias, *geometry(cfg), weight3=w3)
    want = reference_cg2d(*(t.double() if t is not None else None for t in (x, w1, w2, w3, bias)), *geometry(cfg))
    # normwise, tied to the reduction length: each output sums C_in/groups * (features per patch) float32 products
    p = cfg["kernel"][0] * cfg["kernel"][1]
    length = cfg["cg"] * (p + num_pairs(p) + (num_triples(p) if cfg["order"] == 3 else 0))
    error = (y.double() - want).norm() / want.norm().clamp_min(1e-30)  # (an all-padding output is exactly 0)
    assert error <= 2 * length * 2.0 ** -24, (error, length)


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="physkernels._C not built")
def test_cpp_is_independent_of_thread_count_and_accepts_channels_last():
    """Bitwise equal values and gradients with 1, 2 and 3 threads. The work split depends on the thread count: the
    first layer splits the backward's channel blocks differently, the second (batch 1, one tile, 96 outputs) also
    splits the forward's outputs into 2, 4 and 4 blocks."""
    configs = [
        dict(batch=3, c_in=8, c_out=6, cg=4, h=11, w=9, kernel=(2, 3), stride=(1, 2), padding=(1, 1),
             dilation=(2, 1), groups=2, order=2, bias=True),
        dict(batch=1, c_in=4, c_out=96, cg=4, h=6, w=7, kernel=(2, 2), stride=(1, 1), padding=(0, 0),
             dilation=(1, 1), groups=1, order=2, bias=True),
    ]
    threads = torch.get_num_threads()
    for cfg in configs:
        x, w1, w2, bias, _ = make_args(cfg, torch.float32)
        results = []
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                leaves = [t.clone().requires_grad_() for t in (x, w1, w2, bias)]
                with physkernels.use_backend("cpp"):
                    y = cg2d(*leaves, *geometry(cfg))
                y.backward(torch.ones_like(y))
                results.append([y.detach()] + [t.grad for t in leaves])
        finally:
            torch.set_num_threads(threads)
        for other in results[1:]:
            for a, b in zip(results[0], other):
                assert torch.equal(a, b)
        with physkernels.use_backend("cpp"):
            y_cl = cg2d(x.to(memory_format=torch.channels_last), w1, w2, bias, *geometry(cfg))
        torch.testing.assert_close(y_cl, results[0][0], atol=1e-5, rtol=1e-5)


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="physkernels._C not built")
@pytest.mark.parametrize("isa", ["baseline", "avx2+fma"])
def test_cpp_every_instruction_set_matches_reference(isa):
    """The C++ kernels are compiled per instruction set and picked at run time (AVX-512 here); PHYSKERNELS_CG2D_ISA
    caps the choice once per process, so the narrower variants run in a fresh interpreter."""
    script = (
        "import sys, physkernels._C as C, test_cg2d as t\n"
        "print(C.cg2d.isa())\n"
        "if C.cg2d.isa() != sys.argv[1]: sys.exit(0)\n"
        "for seed in range(40): t.check_backend(t.random_config(seed), 'cpp', seed=seed)\n"
        "t.test_cpp_taylornet_stride_two_layers((1, 1), 11)\n"
        "t.test_cpp_is_independent_of_thread_count_and_accepts_channels_last()\n")
    env = dict(os.environ, PHYSKERNELS_CG2D_ISA=isa.split("+")[0],
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(physkernels.__file__)),
                                           os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-c", script, isa], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    if run.stdout.split()[0] != isa:
        pytest.skip(f"this CPU cannot run the {isa} kernels")


# ---------------------------------------------------------------------------------------------------------------
# Triton (CPU interpreter here: tiny shapes)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.triton
@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="triton needs a GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("seed", [1, 2, 3, 5, 6, 7, 9, 10, 14, 21])
def test_triton_matches_reference(seed):
    cfg = random_config(seed)
    cfg.update(order=2, batch=min(cfg["batch"], 2))
    check_backend(cfg, "triton", seed=seed)


@pytest.mark.triton
@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="triton needs a GPU or TRITON_INTERPRET=1")
def test_triton_accepts_channels_last():
    cfg = dict(batch=2, c_in=4, c_out=4, cg=2, h=5, w=7, kernel=(2, 2), stride=(2, 1), padding=(1, 0),
               dilation=(1, 2), groups=2, order=2, bias=True)
    x, w1, w2, bias, _ = make_args(cfg)
    with physkernels.use_backend("triton"):
        y = cg2d(x.to(memory_format=torch.channels_last), w1, w2, bias, *geometry(cfg))
    torch.testing.assert_close(y, reference_cg2d(x, w1, w2, None, bias, *geometry(cfg)))


# ---------------------------------------------------------------------------------------------------------------
# torch.library / autograd machinery
# ---------------------------------------------------------------------------------------------------------------
GRADCHECK_CONFIGS = [
    dict(batch=2, c_in=2, c_out=3, cg=2, h=5, w=4, kernel=(2, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
         groups=1, order=2, bias=True),
    dict(batch=1, c_in=2, c_out=2, cg=1, h=4, w=3, kernel=(2, 2), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
         groups=2, order=3, bias=True),
]


@pytest.mark.parametrize("backend", ["reference"] + CPU_BACKENDS)
@pytest.mark.parametrize("cfg", GRADCHECK_CONFIGS)
def test_gradcheck(backend, cfg):
    skip_unsupported(backend, cfg)
    x, w1, w2, bias, w3 = make_args(cfg)
    geo = geometry(cfg)
    tensors = [t.requires_grad_() for t in (x, w1, w2, bias, w3) if t is not None]

    def f(x, w1, w2, bias, w3=None):
        with physkernels.use_backend(backend):
            return cg2d(x, w1, w2, bias, *geo, weight3=w3)

    assert torch.autograd.gradcheck(f, tensors, fast_mode=True)


@pytest.mark.parametrize("cfg", GRADCHECK_CONFIGS)
def test_opcheck(cfg):
    x, w1, w2, bias, w3 = make_args(cfg)
    s, p, d, g = (list(v) if isinstance(v, tuple) else v for v in geometry(cfg))
    torch.library.opcheck(torch.ops.physkernels.cg2d.default,
                          (x.requires_grad_(), w1.requires_grad_(), w2.requires_grad_(), w3, bias, s, p, d, g))
    y = reference_cg2d(x.detach(), w1.detach(), w2.detach(), w3, bias, *geometry(cfg))
    needs = [True, True, True, w3 is not None, bias is not None, False, False, False, False]
    torch.library.opcheck(torch.ops.physkernels.cg2d_backward.default,
                          (torch.randn_like(y), needs, x.detach(), w1.detach(), w2.detach(), w3, bias, s, p, d, g))


def test_torch_compile_fullgraph():
    cfg = GRADCHECK_CONFIGS[0]
    x, w1, w2, bias, _ = make_args(cfg, torch.float32)
    layer = CG2d(2, 3, 2, stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y = compiled(x.requires_grad_())
    torch.testing.assert_close(y, layer(x))
    y.sum().backward()
    grad_compiled = x.grad.clone()
    x.grad = None
    layer(x).sum().backward()
    torch.testing.assert_close(grad_compiled, x.grad)


def test_torch_compile_traces_the_custom_op_and_eager_calls_bypass_it():
    """Under torch.compile the graph holds physkernels::cg2d (opaque to the compiler, with its fake and autograd
    registrations); an eager call runs the same kernels through the lighter autograd.Function instead."""
    traced = []

    def recording_backend(gm, example_inputs):
        traced.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return gm.forward

    x, w1, w2, bias, _ = make_args(GRADCHECK_CONFIGS[0], torch.float32)
    layer = CG2d(2, 3, 2, stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    torch.compile(layer, fullgraph=True, backend=recording_backend)(x)
    assert "physkernels.cg2d.default" in traced
    assert type(layer(x).grad_fn).__name__ == "_EagerCG2dBackward"


def test_torch_export_records_the_custom_op():
    layer = CG2d(4, 6, 2, stride=2)
    x = torch.randn(2, 4, 9, 9)
    exported = torch.export.export(layer, (x,))
    assert [str(n.target) for n in exported.graph.nodes if n.op == "call_function"] == ["physkernels.cg2d.default"]
    torch.testing.assert_close(exported.module()(x), layer(x))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cfg", GRADCHECK_CONFIGS)
def test_eager_path_equals_the_custom_op(backend, cfg):
    """Both paths call the same backend implementations: values and all gradients agree bit for bit."""
    skip_unsupported(backend, cfg)
    x, w1, w2, bias, w3 = make_args(cfg)
    s, p, d, g = geometry(cfg)
    results = []
    for path in ("eager", "custom op"):
        leaves = [t.clone().requires_grad_() for t in (x, w1, w2, bias, w3) if t is not None]
        xl, w1l, w2l, bl, *w3l = leaves
        with physkernels.use_backend(backend):
            if path == "eager":
                y = cg2d(xl, w1l, w2l, bl, s, p, d, g, weight3=w3l[0] if w3l else None)
            else:
                y = torch.ops.physkernels.cg2d(xl, w1l, w2l, w3l[0] if w3l else None, bl, list(s), list(p), list(d), g)
            results.append([y] + list(torch.autograd.grad(y, leaves, torch.ones_like(y))))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_fake_tensors_take_the_custom_op():
    """Shape propagation with fake tensors (what export and the compiler's tracing do) never reaches a kernel."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 4, 9, 7)
        w1, w2, bias = torch.empty(6, 2, 2, 3), torch.empty(6, 2, num_pairs(6)), torch.empty(6)
        y = cg2d(x, w1, w2, bias, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    assert y.shape == (2, 6, 5, 5)


# ---------------------------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [2, 3])
def test_from_conv_equals_the_conv(order):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, (2, 3), stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    layer = CG2d.from_conv(conv, order=order)
    x = torch.randn(3, 6, 9, 11)
    torch.testing.assert_close(layer(x), conv(x), atol=1e-5, rtol=1e-5)
    assert layer.weight2.abs().max() == 0 and (order == 2 or layer.weight3.abs().max() == 0)


def test_order_one_is_a_convolution_and_arguments_match_conv2d():
    torch.manual_seed(0)
    layer = CG2d(4, 6, kernel_size=(3, 2), stride=2, padding=(1, 0), dilation=1, groups=2, order=1)
    assert layer.weight2 is None and layer.weight.shape == nn.Conv2d(4, 6, (3, 2), groups=2).weight.shape
    x = torch.randn(2, 4, 9, 7)
    want = nn.functional.conv2d(x, layer.weight, layer.bias, 2, (1, 0), 1, 2)
    torch.testing.assert_close(layer(x), want)
    cg = CG2d(4, 6, 3, padding=1, groups=2, order=2)
    assert cg(x).shape == nn.Conv2d(4, 6, 3, padding=1, groups=2)(x).shape
    assert sum(p.numel() for p in cg.parameters()) == 6 * 2 * (9 + 45) + 6


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = CG2d(3, 5, 2, stride=2, order=3)
    b = CG2d(3, 5, 2, stride=2, order=3)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"weight", "weight2", "weight3", "bias"}
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("order,kernel,paddings", [(2, 3, (1, 1)), (2, 2, (0, 1)), (3, 3, (1, 1)), (3, 2, (0, 1))])
def test_eight_layer_stack_keeps_unit_variance_bounded(order, kernel, paddings):
    """The init rule: 8 stacked CG2d layers, no activations, unit-variance input -> output variance in [0.1, 10]."""
    x = torch.randn(8, 16, 16, 16)
    for seed in range(3):
        torch.manual_seed(seed)
        layers = nn.Sequential(*[CG2d(16, 16, kernel, padding=paddings[i % 2], order=order) for i in range(8)])
        with torch.no_grad():
            variance = layers(x).var().item()
        assert 0.1 <= variance <= 10, (seed, variance)


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------
def _good():
    x = torch.randn(2, 4, 6, 6)
    return dict(x=x, weight=torch.randn(6, 2, 2, 2), weight2=torch.randn(6, 2, 10), bias=torch.randn(6), groups=2)


@pytest.mark.parametrize("change,error,match", [
    (dict(x=torch.randn(6, 6)), ValueError, r"x must be \(B, C_in, H, W\) or unbatched"),
    (dict(x=torch.randn(2, 6, 6, 6)), ValueError, "channels"),
    (dict(x=torch.randn(2, 4, 1, 6)), ValueError, "padded input x"),
    (dict(weight2=torch.randn(6, 2, 9)), ValueError, "weight2 must have shape"),
    (dict(groups=3), ValueError, "groups"),
    (dict(weight=torch.randn(6, 2, 2, 2, dtype=torch.float64)), TypeError, "weight has dtype"),
    (dict(x=torch.randn(2, 4, 6, 6).to(torch.int32)), TypeError, "x must be float16, bfloat16, float32 or float64"),
    (dict(bias=torch.randn(5)), ValueError, "bias must have shape"),
    (dict(weight2=torch.randn(6, 2, 10, device="meta")), ValueError, "weight2 is on meta"),
    (dict(x=[[1.0]]), TypeError, "x must be a torch.Tensor"),
])
def test_bad_input_raises_naming_the_argument(change, error, match):
    args = {**_good(), **change}
    with pytest.raises(error, match=match):
        cg2d(args["x"], args["weight"], args["weight2"], args["bias"], groups=args["groups"])


def test_bad_arguments_to_the_layer_and_geometry():
    with pytest.raises(ValueError, match="groups"):
        CG2d(4, 6, 2, groups=4)
    with pytest.raises(ValueError, match="order"):
        CG2d(4, 6, 2, order=4)
    with pytest.raises(ValueError, match="padding_mode"):
        CG2d(4, 6, 2, padding_mode="reflect")
    with pytest.raises(TypeError, match="stride"):
        cg2d(**{k: v for k, v in _good().items()}, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="in_channels=4"):
        CG2d(4, 6, 2)(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="weight3 must have shape"):
        g = _good()
        cg2d(g["x"], g["weight"], g["weight2"], g["bias"], groups=2, weight3=torch.randn(6, 2, 19))
    with pytest.raises(TypeError, match="conv must be an nn.Conv2d"):
        CG2d.from_conv(nn.Linear(3, 3))


@pytest.mark.triton
@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="triton needs a GPU or TRITON_INTERPRET=1")
def test_triton_spans_several_blocks_of_every_tiled_dimension():
    """17 output channels per group (two channel blocks of 16), 2 x 4 x 4 = 32 or 2 x 5 x 4 = 40 output positions
    and 25 or 30 input pixels (several blocks of 16), two groups: every grid axis of the forward, dW and dx kernels
    has several blocks, and the dW reduction over positions runs in two slices (the second one partial for 40)."""
    from physkernels.ops._triton_launch import reduction_splits
    from physkernels.ops.cg2d import triton_backend as cg2d_triton

    block_r, block_o, _ = cg2d_triton._INTERPRETED_CONFIGS[0]
    assert 17 > block_o and 2 * 4 * 4 > block_r and 5 * 5 > block_r
    assert reduction_splits(4, 3, torch.device("cpu")) == 2
    for h in (5, 6):
        cfg = dict(batch=2, c_in=4, c_out=34, cg=2, h=h, w=5, kernel=(2, 2), stride=(1, 1), padding=(0, 0),
                   dilation=(1, 1), groups=2, order=2, bias=True)
        check_backend(cfg, "triton", seed=3)


# ------------------------------------------------------------------------------------------- every device
@pytest.mark.parametrize("device,backend,dtype", device_backend_dtype())
@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_on_every_device(device, backend, dtype, seed):
    cfg = dict(random_config(seed), order=2)  # the GPU kernels are order 2
    x, w1, w2, bias, _ = make_args(cfg, torch.float64, seed=seed)
    geo = geometry(cfg)

    def op(x, w1, w2, bias=None):
        with physkernels.use_backend(backend):
            return cg2d(x, w1, w2, bias, *geo)

    def ref(x, w1, w2, bias=None):
        return reference_cg2d(x, w1, w2, None, bias, *geo)

    args = [x, w1, w2] + ([bias] if bias is not None else [])
    check_on_device(op, ref, args, device, dtype, names=NAMES_2[:len(args)])


@pytest.mark.parametrize("device,backend", device_backend())
def test_paper_layer_and_channels_last_on_every_device(device, backend):
    """CG(3, 3, 64, 1, 1, 1)-sized layer on a CIFAR-sized batch, channels_last input included."""
    cfg = dict(batch=8 if device == "cuda" else 2, c_in=16, c_out=32, cg=16, h=32 if device == "cuda" else 12,
               w=32 if device == "cuda" else 12, kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
               groups=1, order=2, bias=True)
    x, w1, w2, bias, _ = make_args(cfg, seed=5)
    for layout in (torch.contiguous_format, torch.channels_last):
        check_on_device(with_backend(lambda x, *w: cg2d(x.contiguous(memory_format=layout), *w, *geometry(cfg)),
                                     backend),
                        lambda x, w1, w2, b: reference_cg2d(x, w1, w2, None, b, *geometry(cfg)), [x, w1, w2, bias],
                        device, torch.float32, names=NAMES_2)


@pytest.mark.parametrize("device,backend", device_backend())
def test_kernels_span_several_blocks_on_every_device(device, backend):
    """Several blocks along every tiled axis of the kernels (output channels, positions, pixels): a kernel that
    ignores a block index gets whole tiles wrong."""
    cfg = dict(batch=3, c_in=6, c_out=160, cg=3, h=13, w=11, kernel=(2, 3), stride=(1, 1), padding=(1, 0),
               dilation=(1, 1), groups=2, order=2, bias=True)  # 80 output channels per group, 3 x 14 x 9 positions
    x, w1, w2, bias, _ = make_args(cfg, seed=7)
    check_on_device(with_backend(lambda x, *w: cg2d(x, *w, *geometry(cfg)), backend),
                    lambda x, w1, w2, b: reference_cg2d(x, w1, w2, None, b, *geometry(cfg)), [x, w1, w2, bias],
                    device, torch.float32, names=NAMES_2)


@pytest.mark.parametrize("device,backend,dtype", device_backend_dtype(torch.float64))
def test_gradcheck_and_opcheck_on_every_device(device, backend, dtype):
    cfg = dict(batch=2, c_in=2, c_out=3, cg=2, h=5, w=4, kernel=(2, 2), stride=(2, 1), padding=(1, 0),
               dilation=(1, 2), groups=1, order=2, bias=True)
    x, w1, w2, bias, _ = on_device(make_args(cfg), device, dtype)
    s, p, d, g = geometry(cfg)
    tensors = [t.requires_grad_() for t in (x, w1, w2, bias)]
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda *t: cg2d(*t, s, p, d, g), tensors, fast_mode=True)
        torch.library.opcheck(torch.ops.physkernels.cg2d.default,
                              (x, w1, w2, None, bias, list(s), list(p), list(d), g))
