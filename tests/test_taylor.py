"""TaylorLinear: monomial bookkeeping, every backend against the explicit-monomial float64 reference (values and
all gradients), gradcheck, opcheck, torch.compile, float32 accuracy at order 4, pruning through optimizer steps,
the Fig. 3 statistics, and bad input."""

import itertools
import math

import pytest
import torch

import physkernels
from physkernels.nn import TaylorLinear
from physkernels.ops.taylor_linear import reference_features, reference_taylor_linear, taylor_linear
from physkernels.taylor import (INDEX_LIMIT, monomial_count, monomials, quadratic_weights_by_distance, row_table,
                                term_rows)
from physkernels.testing import check_against_reference, random_tensor
from devices import check_on_device, device_backend, device_backend_dtype, needs_gpu, on_device, with_backend

CPU_BACKENDS = [b for b in physkernels.available_backends("cpu")]
# The Triton interpreter is slow: it gets the small end of the shape grid.
TRITON_SHAPES = [(1, 1), (2, 3), (3, 2), (4, 4), (5, 1)]


def explicit_taylor_linear(x, weight, bias, order):
    """Independent of physkernels' index tables: monomial t is the product of the t-th index tuple of
    itertools.combinations_with_replacement, degree by degree (the documented order)."""
    n = x.shape[-1]
    features = torch.stack([x[:, list(m)].prod(1) for d in range(1, order + 1)
                            for m in itertools.combinations_with_replacement(range(n), d)], dim=1)
    y = features @ weight.t()
    return y if bias is None else y + bias


def _args(n, order, out, batch, seed, bias=True, dtype=torch.float64):
    x = random_tensor(batch, n, dtype=dtype, seed=seed)
    weight = random_tensor(out, monomial_count(n, order), dtype=dtype, seed=seed + 1)
    b = random_tensor(out, dtype=dtype, seed=seed + 2) if bias else None
    return x, weight, b


# ---------------------------------------------------------------- monomials


@pytest.mark.parametrize("n,order", [(1, 1), (1, 4), (3, 2), (4, 4), (7, 3), (49, 2)])
def test_monomials_order_and_count(n, order):
    want = [m for d in range(1, order + 1) for m in itertools.combinations_with_replacement(range(n), d)]
    assert monomials(n, order) == want
    assert monomial_count(n, order) == len(want) == math.comb(n + order, order) - 1


def test_paper_term_count():
    # 49 inputs (7x7 images), fourth order: C(53, 4) - 1 terms plus the bias (the paper's "about 293 thousand").
    assert monomial_count(49, 4) == 292_824


@pytest.mark.parametrize("n,order", [(1, 3), (3, 3), (5, 4), (6, 1)])
def test_row_table_rebuilds_every_monomial(n, order):
    table, rows = row_table(n, order), term_rows(n, order)
    rebuilt = []
    for r, (offset, j0, nprefix, *prefix) in enumerate(table.tolist()):
        assert all(rows[offset + k] == r for k in range(n - j0))
        rebuilt += [tuple(prefix[:nprefix]) + (j,) for j in range(j0, n)]
    assert rebuilt == monomials(n, order)


def test_reference_features_are_the_monomials():
    x = random_tensor(3, 4, seed=0)
    feats = reference_features(x, 3)
    for t, m in enumerate(monomials(4, 3)):
        torch.testing.assert_close(feats[:, t], torch.stack([x[:, i] for i in m]).prod(0))


# ---------------------------------------------------------------- op vs reference


def _shapes(backend):
    if backend == "triton":
        return TRITON_SHAPES
    return [(n, order) for n in range(1, 9) for order in range(1, 5)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_values_and_grads_match_reference(backend):
    gen = torch.Generator().manual_seed(7)
    for i, (n, order) in enumerate(_shapes(backend)):
        out = int(torch.randint(1, 12, (1,), generator=gen))
        batch = int(torch.randint(1, 40 if backend != "triton" else 20, (1,), generator=gen))
        args = _args(n, order, out, batch, seed=100 + i, bias=(i % 3 != 0))
        with physkernels.use_backend(backend):
            check_against_reference(lambda x, w, b: taylor_linear(x, w, b, order),
                                     lambda x, w, b: explicit_taylor_linear(x, w, b, order), args,
                                     names=["x", "weight", "bias"][:2 + (args[2] is not None)])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_eager_inference_matches_reference(backend):
    """Without gradients the eager call runs the kernel directly: the reference's values, x with leading dims."""
    for i, (n, order) in enumerate(_shapes(backend)[::5]):
        x, w, b = _args(n, order, 3, 6, seed=300 + i, bias=i % 2 == 0)
        x = x.reshape(2, 3, n)
        with physkernels.use_backend(backend), torch.no_grad():
            got = taylor_linear(x, w.requires_grad_(), b, order)
        assert not got.requires_grad
        want = explicit_taylor_linear(x.reshape(6, n), w.detach(), b, order).reshape(2, 3, -1)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradcheck(backend):
    n, order = (2, 2) if backend == "triton" else (3, 3)   # the interpreter is slow
    x, w, b = _args(n, order, 2, 3 if backend == "triton" else 5, seed=3)
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda *a: taylor_linear(*a, order),
                                        (x.requires_grad_(), w.requires_grad_(), b.requires_grad_()))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    x, w, b = _args(3, 2, 2, 4, seed=5)
    with physkernels.use_backend(backend):
        torch.library.opcheck(torch.ops.physkernels.taylor_linear.default,
                              (x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), 2))
        torch.library.opcheck(torch.ops.physkernels.taylor_linear.default, (x, w, None, 2))


def test_torch_compile_fullgraph():
    layer = TaylorLinear(5, 3, order=3).double()
    x = random_tensor(2, 7, 5, seed=9)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    torch.testing.assert_close(y, reference_taylor_linear(x, layer.weight, layer.bias, 3))
    y.sum().backward()
    want = torch.autograd.grad(reference_taylor_linear(x, layer.weight, layer.bias, 3).sum(), layer.weight)[0]
    torch.testing.assert_close(layer.weight.grad, want)


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the compiled C++ backend")
def test_float32_error_does_not_grow_with_the_term_count():
    """docs/taylor.md: the compensated sums keep the float32 error independent of the number of terms (up to the
    paper's 292,824 at n = 49, order 4) and of the batch. Same-sign terms (inputs in [0.5, 1], positive weights and
    cotangents) so nothing cancels: every output, dx and dW must stay within a few float32 roundings (~6e-8) of the
    float64 truth at every size; plain (uncompensated) sums exceed the bound at the large sizes."""
    gen = torch.Generator().manual_seed(4)
    bound = 4e-7
    for n, order, batch in ((8, 2, 16), (20, 3, 16), (49, 3, 16), (49, 4, 16), (3, 2, 100_000)):
        terms = monomial_count(n, order)
        x64 = torch.rand(batch, n, dtype=torch.float64, generator=gen) / 2 + 0.5
        w64 = torch.rand(3, terms, dtype=torch.float64, generator=gen)
        g64 = torch.rand(batch, 3, dtype=torch.float64, generator=gen)
        x, w = x64.float().requires_grad_(), w64.float().requires_grad_()
        with physkernels.use_backend("cpp"):
            y = taylor_linear(x, w, None, order)
        y.backward(g64.float())
        xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()  # same rounded inputs
        yr = reference_taylor_linear(xr, wr, None, order)
        yr.backward(g64.float().double())
        for name, got, want in (("y", y, yr), ("dx", x.grad, xr.grad), ("dW", w.grad, wr.grad)):
            error = ((got.double() - want.detach()).abs() / want.detach().abs()).max().item()
            assert error <= bound, f"{name} at n={n}, order={order}, batch={batch} ({terms} terms): {error:.2e}"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_small_against_float64_reference(backend):
    x64, w64, b64 = _args(5, 3, 3, 20, seed=21)
    x64 = x64.abs() / 2
    g64 = random_tensor(20, 3, seed=22)
    x, w, b = (t.float().requires_grad_() for t in (x64, w64, b64))
    with physkernels.use_backend(backend):
        y = taylor_linear(x, w, b, 3)
    y.backward(g64.float())
    xr, wr, br = (t.clone().requires_grad_() for t in (x64, w64, b64))
    yr = reference_taylor_linear(xr, wr, br, 3)
    yr.backward(g64)
    # normwise, tied to the reduction lengths (19 terms, 20 samples): a few float32 roundings of the norm
    for got, want in ((y, yr), (x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad)):
        error = (got.detach().double() - want.detach()).norm() / want.detach().norm()
        assert error <= 20 * 2.0 ** -24, error


@pytest.mark.skipif("cpp" not in CPU_BACKENDS, reason="needs the compiled C++ backend")
def test_cpp_results_do_not_depend_on_thread_count():
    x, w, b = _args(6, 3, 5, 150, seed=11, dtype=torch.float32)
    g = random_tensor(150, 5, seed=12, dtype=torch.float32)
    results = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 4):  # 4 threads also changes the batch chunking
            torch.set_num_threads(t)
            xs, ws, bs = (a.clone().requires_grad_() for a in (x, w, b))
            with physkernels.use_backend("cpp"):
                taylor_linear(xs, ws, bs, 3).backward(g)
            results.append((taylor_linear(x, w, b, 3), xs.grad, ws.grad, bs.grad))
    finally:
        torch.set_num_threads(threads)
    for a, c in zip(*results):
        assert torch.equal(a, c)


def test_leading_dims_no_bias_and_empty_batch():
    x, w, _ = _args(3, 2, 4, 6, seed=13)
    y = taylor_linear(x.reshape(2, 3, 3), w, None, 2)
    torch.testing.assert_close(y, reference_taylor_linear(x, w, None, 2).reshape(2, 3, 4))
    assert taylor_linear(x[:0], w, None, 2).shape == (0, 4)


# ---------------------------------------------------------------- layer and pruning


def test_layer_shapes_and_reference():
    layer = TaylorLinear(4, 3, order=2, dtype=torch.float64)
    assert layer.weight.shape == (3, 14)
    x = random_tensor(5, 4, seed=14)
    torch.testing.assert_close(layer(x), reference_taylor_linear(x, layer.weight, layer.bias, 2))


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.01),
    lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
], ids=["sgd-momentum-wd", "adam-wd", "adamw"])
def test_pruned_weights_stay_zero_through_optimizer_steps(make_optimizer):
    torch.manual_seed(0)
    layer = TaylorLinear(5, 4, order=3, dtype=torch.float64)
    x, target = random_tensor(32, 5, seed=15), random_tensor(32, 4, seed=16)
    optimizer = make_optimizer(layer.parameters())
    for _ in range(3):  # build momentum / Adam moments on every coefficient first
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(layer(x), target).backward()
        optimizer.step()
    before = layer.weight.detach().clone()
    mask = layer.prune(0.3)
    assert mask.sum().item() == round(0.3 * layer.weight.numel())
    kept_min = before.abs()[mask].min()
    assert (before.abs()[~mask] <= kept_min).all()           # the largest |W| are the ones kept
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(layer(x), target).backward()
        assert (layer.weight.grad[~mask] == 0).all()
        optimizer.step()
    y = layer(x)
    assert (layer.weight[~mask] == 0).all() and (layer.effective_weight()[~mask] == 0).all()
    assert not torch.equal(layer.weight[mask], before[mask])  # the kept ones did train
    masked = torch.where(mask, layer.weight, torch.zeros_like(layer.weight))
    torch.testing.assert_close(y, reference_taylor_linear(x, masked, layer.bias, 3))
    assert layer.kept_fraction == pytest.approx(0.3, abs=1e-3)


def test_prune_state_dict_round_trip_and_compounding():
    layer = TaylorLinear(3, 2, order=2)
    layer.prune(0.5)
    layer.prune(0.25)
    assert layer.weight_mask.sum().item() == round(0.25 * layer.weight.numel())
    fresh = TaylorLinear(3, 2, order=2)
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh.weight_mask, layer.weight_mask)


# ---------------------------------------------------------------- Fig. 3 / Fig. 13 statistics


def test_quadratic_weights_by_distance():
    layer = TaylorLinear(9, 2, order=2, dtype=torch.float64)
    stats0 = quadratic_weights_by_distance(layer, (3, 3))
    # Make the quadratic weights decrease with pixel distance: level L5 must sit at distance 0 only.
    with torch.no_grad():
        layer.weight[:, 9:] = -torch.as_tensor(stats0.distance)[None, :] + torch.tensor([[0.0], [0.001]])
    stats = quadratic_weights_by_distance(layer, (3, 3))
    assert stats.pairs.shape == (45, 2) and stats.weights.shape == (2, 45)
    assert stats.distances[0] == 0 and stats.distances[-1] == pytest.approx(math.hypot(2, 2))
    torch.testing.assert_close(torch.as_tensor(stats.level_fraction_at_distance.sum(0)),
                               torch.ones(len(stats.distances), dtype=torch.float64))
    torch.testing.assert_close(torch.as_tensor(stats.distance_fraction_of_level.sum(1)),
                               torch.ones(5, dtype=torch.float64))
    assert stats.distance_fraction_of_level[4, 0] == 1.0                 # all of L5 at d = 0
    assert stats.level_fraction_at_distance[0, -1] == 1.0                # the farthest pairs are all L1
    assert (stats.class_level_counts.sum(0) == 18).all()                 # 90 weights, 5 equal levels
    assert (stats.class_level_counts.sum(1) == 45).all()
    assert (stats.class_maps == stats.class_maps.transpose(0, 2, 1)).all()
    i, j = 2, 6   # pixels (0, 2) and (2, 0)
    t = stats.pairs.tolist().index([i, j])
    assert stats.distance[t] == pytest.approx(math.hypot(2, 2)) and stats.class_maps[1, i, j] == stats.level[1, t]
    # one class shifted far up: all its weights land in the top levels of the shared thresholds
    with torch.no_grad():
        layer.weight[1, 9:] += 100
    counts = quadratic_weights_by_distance(layer, (3, 3)).class_level_counts
    assert counts[1, :2].sum() == 0 and counts[0, 3:].sum() == 0


def test_quadratic_weights_bad_input():
    with pytest.raises(ValueError, match="image_shape"):
        quadratic_weights_by_distance(TaylorLinear(9, 2, order=2), (3, 4))
    with pytest.raises(ValueError, match="order >= 2"):
        quadratic_weights_by_distance(TaylorLinear(9, 2, order=1), (3, 3))


# ---------------------------------------------------------------- bad input


def test_bad_input():
    x, w, b = _args(3, 2, 2, 4, seed=17)
    with pytest.raises(ValueError, match="order must be >= 1"):
        taylor_linear(x, w, b, 0)
    with pytest.raises(TypeError, match="order must be an int"):
        taylor_linear(x, w, b, 2.0)
    with pytest.raises(ValueError, match=r"weight must have shape \(out_features, 9\)"):
        taylor_linear(x, w[:, :-1], b, 2)
    with pytest.raises(ValueError, match="bias must have shape"):
        taylor_linear(x, w, b[:1], 2)
    with pytest.raises(TypeError, match="x must be float16, bfloat16, float32 or float64"):
        taylor_linear(x.long(), w, b, 2)
    with pytest.raises(TypeError, match="weight must match x's dtype"):
        taylor_linear(x, w.float(), b, 2)
    with pytest.raises(ValueError, match="order must be >= 1"):
        TaylorLinear(3, 2, order=0)
    with pytest.raises(ValueError, match="in_features=3"):
        TaylorLinear(3, 2, order=2)(random_tensor(4, 5, dtype=torch.float32, seed=0))
    with pytest.raises(ValueError, match="fraction"):
        TaylorLinear(3, 2, order=2).prune(0.0)


def test_term_count_overflow_is_a_clear_error():
    # C(2004, 4) - 1 ~ 6.7e11 terms cannot be indexed with int32.
    with pytest.raises(ValueError, match="int32 term index"):
        monomial_count(2000, 4)
    with pytest.raises(ValueError, match="int32 term index"):
        TaylorLinear(2000, 2, order=4)
    with pytest.raises(ValueError, match="int32 term index"):
        taylor_linear(torch.zeros(1, 2000), torch.zeros(1, 1), None, 4)
    assert monomial_count(65535, 1) <= INDEX_LIMIT


# ---------------------------------------------------------------- driver


def test_driver_quick_on_digits(tmp_path):
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from models.taylor_expansion import main

    results = main(["--quick", "--orders", "2", "--prune-fractions", "0.5", "--out", str(tmp_path)])
    for name in ("results.json", "fig2_accuracy_vs_order_quick.png", "fig3_quadratic_weights_quick.png",
                 "fig13_class_maps_quick.png", "pruning_quick.png"):  # a quick run says so in its file names
        assert (tmp_path / name).stat().st_size > 0
    by_order = {r["order"]: r for r in results["accuracy_vs_order"]}
    assert by_order[2]["n_terms"] == monomial_count(49, 2)
    assert by_order[2]["test_accuracy"] > 0.5            # 10 classes: chance is 0.1
    assert results["pruning"]["runs"][0]["zero_coefficients_held"]
    assert len(results["quadratic_weights"]["distances"]) > 1


def test_driver_reads_mnist_idx_files_resized(tmp_path):
    """The driver's --dataset mnist path reads idx files through physkernels.data and resizes to --size."""
    import types

    import numpy as np

    import models.taylor_expansion as driver

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        for kind, shape in (("images-idx3", (n, 28, 28)), ("labels-idx1", (n,))):
            array = rng.integers(0, 10 if kind.startswith("labels") else 256, shape, dtype=np.uint8)
            header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
            (tmp_path / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    args = types.SimpleNamespace(dataset="mnist", data_dir=str(tmp_path), size=7, seed=0)
    (train_x, train_y), (test_x, test_y) = driver.load_dataset(args)
    assert train_x.shape == (6, 7, 7) and test_x.shape == (4, 7, 7)
    assert train_y.shape == (6,) and test_y.dtype == torch.long
    assert 0 <= float(train_x.min()) and float(train_x.max()) <= 1


def test_eager_path_matches_the_custom_op():
    """Plain eager calls with gradients take the lighter autograd.Function; it gives the custom op's values and
    gradients bit for bit."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, monomial_count(4, 3), generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    y = taylor_linear(x, weight, bias, 3)
    assert type(y.grad_fn.next_functions[0][0]).__name__ == "_EagerTaylorLinearBackward"
    eager = [y, *torch.autograd.grad(y, (x, weight, bias), grad)]
    y2 = torch.ops.physkernels.taylor_linear(x, weight, bias, 3)
    custom = [y2, *torch.autograd.grad(y2, (x, weight, bias), grad)]
    for a, b in zip(eager, custom):
        assert torch.equal(a, b)



@pytest.mark.triton
@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="triton needs a GPU or TRITON_INTERPRET=1")
def test_triton_spans_several_blocks_of_every_tiled_dimension():
    """70 outputs (two output blocks of 64), 40 samples (three batch blocks of 16), 27 terms (two term blocks of
    16): a kernel that ignores a block index leaves or duplicates whole tiles. The loops over terms (forward, dx)
    and over samples (dW) run in two slices each, the last one partial."""
    from physkernels.ops._triton_launch import reduction_splits
    from physkernels.ops.taylor_linear import triton_backend as taylor_triton

    x, w, b = _args(6, 2, 70, 40, seed=41)
    bb, bt, _ = taylor_triton._INTERPRETED_CONFIGS[0]
    bo = taylor_triton._block_o(70)
    assert 40 > 2 * bb and 70 > bo and monomial_count(6, 2) > bt  # several blocks along every tiled axis
    assert taylor_triton._slices(1, 40, bb, x.device) == (2, 32)  # 3 sample blocks: slices of 32 and 8
    assert taylor_triton._slices(1, monomial_count(6, 2), bt, x.device) == (2, 16)
    assert reduction_splits(1, 3, x.device) == 2
    with physkernels.use_backend("triton"):
        check_against_reference(lambda x, w, b: taylor_linear(x, w, b, 2),
                                lambda x, w, b: explicit_taylor_linear(x, w, b, 2), [x, w, b],
                                names=["x", "weight", "bias"])


# ------------------------------------------------------------------------------------------- every device
@pytest.mark.parametrize("device,backend,dtype", device_backend_dtype())
def test_matches_reference_on_every_device(device, backend, dtype):
    gen = torch.Generator().manual_seed(9)
    shapes = [(1, 1), (2, 3), (5, 2), (8, 4), (13, 2), (49, 2)] + ([(20, 3)] if backend != "triton" else [])
    for i, (n, order) in enumerate(shapes):
        out, batch = int(torch.randint(1, 12, (1,), generator=gen)), int(torch.randint(1, 300, (1,), generator=gen))
        args = _args(n, order, out, batch, seed=50 + i, bias=i % 3 != 0)
        check_on_device(with_backend(lambda x, w, b: taylor_linear(x, w, b, order), backend),
                        lambda x, w, b: reference_taylor_linear(x, w, b, order), args, device, dtype,
                        names=["x", "weight", "bias"][:2 + (args[2] is not None)])


@pytest.mark.parametrize("device,backend", device_backend())
def test_kernels_span_several_blocks_on_every_device(device, backend):
    """150 outputs, 300 samples, 65 terms: several blocks along every tiled axis of the kernels."""
    args = _args(10, 2, 150, 300, seed=61)
    check_on_device(with_backend(lambda x, w, b: taylor_linear(x, w, b, 2), backend),
                    lambda x, w, b: reference_taylor_linear(x, w, b, 2), args, device, torch.float32,
                    names=["x", "weight", "bias"])


@pytest.mark.parametrize("device,backend,dtype", device_backend_dtype(torch.float64))
def test_gradcheck_and_opcheck_on_every_device(device, backend, dtype):
    x, w, b = on_device(_args(3, 3, 2, 5, seed=3), device, dtype)
    with physkernels.use_backend(backend):
        assert torch.autograd.gradcheck(lambda *a: taylor_linear(*a, 3),
                                        (x.requires_grad_(), w.requires_grad_(), b.requires_grad_()))
        torch.library.opcheck(torch.ops.physkernels.taylor_linear.default, (x, w, b, 3))


@pytest.mark.gpu
@needs_gpu
def test_auto_runs_triton_in_float32_and_cuda_in_float64_on_the_gpu():
    from physkernels.ops.taylor_linear import op

    assert op.dispatcher.resolve("cuda", dtype=torch.float32) == "triton"
    assert op.dispatcher.resolve("cuda", dtype=torch.float64) == "cuda"
