"""MPO utilities and layers: factorisation, TT-SVD, canonical forms, bond spectra and
entanglement entropy, parameter counts (Eq. 6, 9), MPOLinear, MPOConv2d, compress, bad input.

The references are independent of the code under test: Eq. 5 evaluated entry by entry, SVDs of the dense weight's
unfoldings, nn.Linear / nn.Conv2d with the dense weight, brute-force factorisation searches.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random

import pytest
import torch
from torch import nn

import physkernels
from physkernels import mpo
from physkernels.nn import MPOConv2d, MPOLinear
from physkernels.testing import check_against_reference

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: OpenMP threads only add oversubscription noise on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_mpo_shapes(rng: random.Random, n: int):
    in_shape = tuple(rng.randint(1, 4) for _ in range(n))
    out_shape = tuple(rng.randint(1, 4) for _ in range(n))
    return in_shape, out_shape


def random_cores(in_shape, out_shape, ranks, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    full = (1, *ranks, 1)
    return [torch.randn(full[k], i, j, full[k + 1], generator=gen, dtype=dtype)
            for k, (i, j) in enumerate(zip(in_shape, out_shape))]


def dense_by_eq5(cores) -> torch.Tensor:
    """W[j, i] = cores[0][:, i_1, j_1, :] @ ... @ cores[n-1][:, i_n, j_n, :], entry by entry (Eq. 5)."""
    in_shape = [c.shape[1] for c in cores]
    out_shape = [c.shape[2] for c in cores]
    w = torch.empty(math.prod(out_shape), math.prod(in_shape), dtype=cores[0].dtype)
    for col, i_idx in enumerate(itertools.product(*map(range, in_shape))):
        for row, j_idx in enumerate(itertools.product(*map(range, out_shape))):
            m = cores[0][:, i_idx[0], j_idx[0], :]
            for k in range(1, len(cores)):
                m = m @ cores[k][:, i_idx[k], j_idx[k], :]
            w[row, col] = m[0, 0]
    return w


def unfolding(w, in_shape, out_shape, bond):
    """W as a matrix with rows (i_1 j_1 .. i_b j_b) and columns (i_{b+1} j_{b+1} ..), built with explicit loops
    over a reshaped copy (independent of physkernels' interleaving helper)."""
    n = len(in_shape)
    t = w.reshape(*out_shape, *in_shape)
    left = [(k, n + k) for k in range(bond)]
    right = [(k, n + k) for k in range(bond, n)]
    perm = [ax for j, i in left for ax in (i, j)] + [ax for j, i in right for ax in (i, j)]
    rows = math.prod(in_shape[:bond]) * math.prod(out_shape[:bond])
    return t.permute(perm).reshape(rows, -1)


def entropy_of(s):
    p = s.to(F64) ** 2 / (s.to(F64) ** 2).sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


# ---------------------------------------------------------------------------------------------------------------
# factorize, useful ranks, parameter counts
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,parts,expected", [
    (784, 4, (4, 7, 7, 4)), (256, 4, (4, 4, 4, 4)), (4096, 5, (4, 4, 8, 8, 4)), (10, 4, (1, 2, 5, 1)),
    (1, 3, (1, 1, 1)), (13, 2, (1, 13)),
])
def test_factorize_paper_shapes(n, parts, expected):
    assert mpo.factorize(n, parts) == expected


def test_factorize_is_the_most_balanced_factorisation():
    rng = random.Random(3)
    for _ in range(40):
        n, parts = rng.randint(1, 2000), rng.randint(1, 4)
        got = mpo.factorize(n, parts)
        assert len(got) == parts and math.prod(got) == n
        assert got == got[::-1] or max(got) in got[1:-1] or parts <= 2  # largest factors towards the middle
        # brute force over all ordered factorisations: none has a smaller spread of log-factors
        def spread(fs):
            logs = [math.log(f) for f in fs]
            return sum((x - sum(logs) / len(logs)) ** 2 for x in logs)
        best = min(spread(fs) for fs in _ordered_factorisations(n, parts))
        assert spread(got) <= best + 1e-9


def _ordered_factorisations(n, parts):
    if parts == 1:
        yield (n,)
        return
    for d in range(1, n + 1):
        if n % d == 0:
            for rest in _ordered_factorisations(n // d, parts - 1):
                yield (d,) + rest


def test_factorize_impossible_and_bad_arguments():
    with pytest.raises(ValueError, match="cannot factorize n=7 into parts=2"):
        mpo.factorize(7, 2, allow_ones=False)
    assert mpo.factorize(12, 2, allow_ones=False) == (3, 4)
    with pytest.raises(ValueError, match="parts"):
        mpo.factorize(784, 0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        mpo.factorize(0, 2)
    with pytest.raises(TypeError, match="n must be an int"):
        mpo.factorize(784.0, 4)


def test_useful_ranks_clip_to_unfolding_ranks():
    assert mpo.useful_ranks((4, 7, 7, 4), (4, 4, 4, 4), 16) == (16, 16, 16)
    assert mpo.useful_ranks((4, 7, 7, 4), (4, 4, 4, 4), 1000) == (16, 448, 16)
    assert mpo.max_ranks((4, 7, 7, 4), (4, 4, 4, 4)) == (16, 448, 16)
    # a rank of 1 caps its neighbours at what one direction times the local dimension can carry
    assert mpo.useful_ranks((2, 2, 2, 2), (2, 2, 2, 2), [50, 1, 50]) == (4, 1, 4)
    rng = random.Random(0)
    for _ in range(20):
        in_shape, out_shape = random_mpo_shapes(rng, rng.randint(2, 6))
        ranks = mpo.useful_ranks(in_shape, out_shape, rng.randint(1, 9))
        w = mpo.to_dense(random_cores(in_shape, out_shape, ranks, seed=rng.randint(0, 99)))
        for b, r in enumerate(ranks, start=1):  # generic cores realise exactly the clipped rank at every bond
            assert torch.linalg.matrix_rank(unfolding(w, in_shape, out_shape, b)) == r


def test_num_parameters_is_eq6_and_reproduces_the_paper():
    in_shape, out_shape, d = (4, 7, 7, 4), (4, 4, 4, 4), 8
    eq6 = sum(i * j * d * d for i, j in zip(in_shape[1:-1], out_shape[1:-1])) + \
        in_shape[0] * out_shape[0] * d + in_shape[-1] * out_shape[-1] * d
    assert mpo.num_parameters(in_shape, out_shape, d) == eq6
    # FC2 at D = 2 with the classifier M_{4,4,4,4}^{1,1,10,1}(4): "only 1024 parameters" (paper, Sec. III A)
    assert mpo.num_parameters(in_shape, out_shape, 2) + mpo.num_parameters((4, 4, 4, 4), (1, 1, 10, 1), 4) == 1024
    layers = [MPOLinear(in_shape, out_shape, 2), MPOLinear((4, 4, 4, 4), (1, 1, 10, 1), 4)]
    assert sum(l.num_parameters for l in layers) == 1024
    assert mpo.compression_ratio(layers) == pytest.approx(1024 / (784 * 256 + 256 * 10))
    assert mpo.compression_ratio([(10, 100), (30, 100)]) == pytest.approx(0.2)
    assert layers[0].compression_ratio == pytest.approx(layers[0].num_parameters / (784 * 256))


# ---------------------------------------------------------------------------------------------------------------
# to_dense, TT-SVD
# ---------------------------------------------------------------------------------------------------------------
def test_to_dense_matches_eq5_entry_by_entry():
    rng = random.Random(1)
    for n in range(2, 6):
        in_shape, out_shape = random_mpo_shapes(rng, n)
        ranks = [rng.randint(1, 3) for _ in range(n - 1)]
        cores = random_cores(in_shape, out_shape, ranks, seed=n)
        torch.testing.assert_close(mpo.to_dense(cores), dense_by_eq5(cores), rtol=1e-12, atol=1e-12)


def test_kronecker_product_is_a_bond_one_mpo():
    """Row-major convention check against torch.kron: W = A (x) B has cores A^T, B^T and one bond of dimension 1."""
    a, b = torch.randn(3, 2, dtype=F64), torch.randn(4, 5, dtype=F64)   # (J_1, I_1), (J_2, I_2)
    w = torch.kron(a, b)                                                # (J_1 J_2, I_1 I_2)
    cores = [a.T[None, :, :, None], b.T[None, :, :, None]]
    torch.testing.assert_close(mpo.to_dense(cores), w, rtol=0, atol=1e-14)
    recovered, error = mpo.tt_svd(w, (2, 5), (3, 4), 1)
    assert error < 1e-14 and recovered[0].shape == (1, 2, 3, 1)
    layer = MPOLinear.from_linear(_linear_with(w), (2, 5), (3, 4), bond_dim=1)
    assert float(layer.entanglement_entropy()[0]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_tt_svd_at_full_bond_is_exact(n):
    rng = random.Random(10 + n)
    in_shape, out_shape = random_mpo_shapes(rng, n)
    w = torch.randn(math.prod(out_shape), math.prod(in_shape), dtype=F64)
    cores, error = mpo.tt_svd(w, in_shape, out_shape, None)
    assert error < 1e-13
    torch.testing.assert_close(mpo.to_dense(cores), w, rtol=0, atol=1e-12)
    assert tuple(c.shape[3] for c in cores[:-1]) == mpo.max_ranks(in_shape, out_shape)


def test_tt_svd_truncation_error_and_bounds():
    in_shape, out_shape = (3, 4, 2, 3), (2, 3, 4, 2)
    w = torch.randn(math.prod(out_shape), math.prod(in_shape), dtype=F64)
    previous = math.inf
    for d in (1, 2, 4, 8, 16, 64):
        cores, error = mpo.tt_svd(w, in_shape, out_shape, d)
        actual = torch.linalg.norm(w - mpo.to_dense(cores)) / torch.linalg.norm(w)
        assert error == pytest.approx(float(actual), rel=1e-10)
        # Oseledets (2011), Thm 2.2: ||W - W_tt||^2 <= sum_b sum_{a > r_b} sigma_a(W_(b))^2
        ranks = [c.shape[3] for c in cores[:-1]]
        bound = sum(float((torch.linalg.svdvals(unfolding(w, in_shape, out_shape, b))[r:] ** 2).sum())
                    for b, r in enumerate(ranks, start=1))
        assert (error * torch.linalg.norm(w)) ** 2 <= bound * (1 + 1e-10) + 1e-20
        assert error <= previous + 1e-12
        previous = error
    assert previous < 1e-12  # D = 64 exceeds every unfolding rank


def test_tt_svd_with_two_cores_is_the_optimal_truncated_svd():
    in_shape, out_shape = (6, 5), (3, 4)
    w = torch.randn(12, 30, dtype=F64)
    s = torch.linalg.svdvals(unfolding(w, in_shape, out_shape, 1))
    for d in (1, 3, 7):
        _, error = mpo.tt_svd(w, in_shape, out_shape, d)  # Eckart-Young: the best rank-d approximation
        assert error == pytest.approx(float(s[d:].norm() / s.norm()), rel=1e-10)


@pytest.mark.parametrize("shape", [(3, 40), (40, 3), (6, 7)])
def test_thin_svd_all_aspect_ratios(shape):
    from physkernels.mpo.tensor_train import _thin_svd

    m = torch.randn(*shape, dtype=F64)
    u, s, vh = _thin_svd(m)
    k = min(shape)
    assert u.shape == (shape[0], k) and s.shape == (k,) and vh.shape == (k, shape[1])
    torch.testing.assert_close((u * s) @ vh, m, rtol=0, atol=1e-12)
    torch.testing.assert_close(u.T @ u, torch.eye(k, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(vh @ vh.T, torch.eye(k, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(s, torch.linalg.svdvals(m), rtol=1e-12, atol=1e-12)


def test_tt_svd_keeps_dtype_and_device():
    w = torch.randn(16, 12)
    cores, error = mpo.tt_svd(w, (3, 4), (4, 4), 2)
    assert all(c.dtype == torch.float32 and c.device == w.device for c in cores)
    assert 0 < error < 1


# ---------------------------------------------------------------------------------------------------------------
# canonical form, bond spectra, entanglement entropy
# ---------------------------------------------------------------------------------------------------------------
def test_canonical_form_properties():
    rng = random.Random(5)
    for n in (2, 3, 5):
        in_shape, out_shape = random_mpo_shapes(rng, n)
        ranks = mpo.useful_ranks(in_shape, out_shape, [rng.randint(1, 5) for _ in range(n - 1)])
        cores = random_cores(in_shape, out_shape, ranks, seed=n)
        w = mpo.to_dense(cores)
        for center in range(n):
            canon = mpo.canonicalize(cores, center)
            torch.testing.assert_close(mpo.to_dense(canon), w, rtol=1e-12, atol=1e-12)
            for k, c in enumerate(canon):
                d0, i, j, d1 = c.shape
                if k < center:      # left-orthonormal
                    m = c.reshape(d0 * i * j, d1)
                    torch.testing.assert_close(m.T @ m, torch.eye(d1, dtype=F64), rtol=0, atol=1e-12)
                elif k > center:    # right-orthonormal
                    m = c.reshape(d0, i * j * d1)
                    torch.testing.assert_close(m @ m.T, torch.eye(d0, dtype=F64), rtol=0, atol=1e-12)
            assert float(canon[center].norm()) == pytest.approx(float(w.norm()), rel=1e-12)
    assert [c.shape for c in mpo.canonicalize(cores, -1)] == [c.shape for c in mpo.canonicalize(cores, n - 1)]
    with pytest.raises(ValueError, match="center"):
        mpo.canonicalize(cores, n)
    with pytest.raises(TypeError, match="center"):
        mpo.canonicalize(cores, 1.0)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_bond_spectra_and_entropy_equal_dense_svd(n):
    rng = random.Random(20 + n)
    in_shape, out_shape = random_mpo_shapes(rng, n)
    ranks = mpo.useful_ranks(in_shape, out_shape, [rng.choice([1, 2, 3, 6]) for _ in range(n - 1)])
    cores = random_cores(in_shape, out_shape, ranks, seed=n)
    w = mpo.to_dense(cores)
    spectra = mpo.bond_spectra(cores)
    entropy = mpo.entanglement_entropy(spectra)
    assert entropy.shape == (n - 1,)
    for b, s in enumerate(spectra, start=1):
        dense = torch.linalg.svdvals(unfolding(w, in_shape, out_shape, b))
        assert s.shape == (ranks[b - 1],)
        torch.testing.assert_close(s, dense[:len(s)], rtol=1e-10, atol=1e-10 * float(dense[0]))
        assert all(float(t) < 1e-10 * float(dense[0]) for t in dense[len(s):])
        assert float(entropy[b - 1]) == pytest.approx(entropy_of(dense), abs=1e-9)


def test_entropy_known_values_and_layer_method():
    # a product operator (all bonds 1) has zero entropy; an orthogonal unfolding has log(rank)
    product = random_cores((2, 3, 2), (3, 2, 2), (1, 1), seed=1)
    assert torch.allclose(mpo.entanglement_entropy(mpo.bond_spectra(product)), torch.zeros(2, dtype=F64),
                          atol=1e-12)
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=F64))
    w = q.reshape(2, 2, 2, 2).permute(1, 3, 0, 2).reshape(4, 4)   # unfolding at bond 1 (rows i1 j1) is q
    torch.testing.assert_close(unfolding(w, (2, 2), (2, 2), 1), q)
    layer = MPOLinear.from_linear(_linear_with(w), (2, 2), (2, 2), bond_dim=4)
    assert float(layer.entanglement_entropy()[0]) == pytest.approx(math.log(4), abs=1e-10)
    # the layer method equals the dense SVD at every bond
    layer = MPOLinear((3, 4, 2), (2, 3, 3), 5, dtype=F64)
    w = layer.to_dense().detach()
    want = [entropy_of(torch.linalg.svdvals(unfolding(w, (3, 4, 2), (2, 3, 3), b))) for b in (1, 2)]
    torch.testing.assert_close(layer.entanglement_entropy(), torch.tensor(want, dtype=F64), rtol=0, atol=1e-9)


def _linear_with(weight, bias=None):
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


# ---------------------------------------------------------------------------------------------------------------
# MPOLinear
# ---------------------------------------------------------------------------------------------------------------
def _params_call(layer, cores, bias):
    params = {f"cores.{k}": c for k, c in enumerate(cores)}
    if bias is not None:
        params["bias"] = bias
    return params


@pytest.mark.parametrize("in_shape,out_shape,bond_dim,lead", [
    ((4, 7, 7, 4), (4, 4, 4, 4), 3, (5,)),
    ((2, 3), (3, 2), 1, (2, 3)),
    ((2, 1, 3, 2, 2), (1, 3, 2, 2, 1), [2, 1, 3, 2], (4,)),
    ((2, 2, 2, 2, 2, 2), (2, 2, 1, 2, 2, 2), 4, ()),
])
def test_mpo_linear_layer_matches_dense_values_and_gradients(in_shape, out_shape, bond_dim, lead):
    layer = MPOLinear(in_shape, out_shape, bond_dim, dtype=F64)
    assert (layer.in_features, layer.out_features) == (math.prod(in_shape), math.prod(out_shape))
    assert isinstance(layer.cores, nn.ParameterList) and len(layer.cores) == len(in_shape)
    assert layer.ranks == mpo.useful_ranks(in_shape, out_shape, bond_dim)
    x = torch.randn(*lead, layer.in_features, dtype=F64)
    bias = torch.randn(layer.out_features, dtype=F64)
    cores = [c.detach().clone() for c in layer.cores]

    def through_layer(x, cores, bias):
        return torch.func.functional_call(layer, _params_call(layer, cores, bias), (x,))

    def dense(x, cores, bias):
        small = math.prod(in_shape) * math.prod(out_shape) <= 4096  # Eq. 5 entry by entry, else the checked to_dense
        return x @ (dense_by_eq5(cores) if small else mpo.to_dense(cores)).T + bias

    check_against_reference(through_layer, dense, [x, cores, bias], atol=1e-10, rtol=1e-9)


def test_mpo_linear_with_a_parametrized_core():
    """A parametrized core (here scaled by 2) is what the layer multiplies with: the forward reads the cores
    through the ParameterList, not its registry, once a core has left it."""
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, core):
            return 2 * core

    layer = MPOLinear((3, 4), (2, 5), 2, dtype=F64)
    x = torch.randn(6, 12, dtype=F64)
    want = x @ (2 * layer.to_dense()).detach().T + layer.bias.detach()
    parametrize.register_parametrization(layer.cores, "1", Double())
    torch.testing.assert_close(layer(x), want)


def test_mpo_linear_without_bias_and_non_contiguous_input():
    layer = MPOLinear((3, 4), (2, 5), 2, bias=False, dtype=F64)
    assert layer.bias is None
    x = torch.randn(12, 6, dtype=F64).T  # (6, 12), non-contiguous
    torch.testing.assert_close(layer(x), x @ layer.to_dense().T)


def test_init_matches_nn_linear_variance():
    """E[mean W^2] = 1/(3 in_features) (nn.Linear's U(+-1/sqrt(fan_in))); averaged over fresh draws."""
    torch.manual_seed(0)
    cases = [((4, 4), (4, 4), 16, 300, 0.05), ((2, 3, 2), (2, 2, 3), 16, 400, 0.08),  # second: ranks clipped
             ((4, 7, 7, 4), (4, 4, 4, 4), 8, 150, 0.08)]
    for in_shape, out_shape, d, draws, tol in cases:
        ratios = []
        for _ in range(draws):
            layer = MPOLinear(in_shape, out_shape, d, dtype=F64)
            ratios.append(float(layer.to_dense().detach().pow(2).mean()) * 3 * layer.in_features)
        assert sum(ratios) / draws == pytest.approx(1.0, abs=tol), (in_shape, out_shape, layer.ranks)
    bound = 1 / math.sqrt(layer.in_features)
    largest = float(layer.bias.detach().abs().max())
    assert 0.5 * bound < largest <= bound


def test_from_linear_at_full_bond_reconstructs_exactly():
    linear = nn.Linear(784, 256, dtype=F64)
    layer = MPOLinear.from_linear(linear)  # shapes factorised: (4,7,7,4) -> (4,4,4,4), bond_dim None = full
    assert (layer.in_shape, layer.out_shape) == ((4, 7, 7, 4), (4, 4, 4, 4))
    assert layer.truncation_error < 1e-13
    torch.testing.assert_close(layer.to_dense(), linear.weight, rtol=0, atol=1e-13)
    torch.testing.assert_close(layer.bias, linear.bias, rtol=0, atol=0)
    x = torch.randn(3, 784, dtype=F64)
    torch.testing.assert_close(layer(x), linear(x), rtol=1e-12, atol=1e-12)


def test_from_linear_truncated_reports_error():
    linear = nn.Linear(60, 24, bias=False)
    layer = MPOLinear.from_linear(linear, (3, 4, 5), (2, 3, 4), bond_dim=3)
    assert layer.bias is None and layer.to_dense().dtype == torch.float32
    w = linear.weight.detach().double()
    actual = float(torch.linalg.norm(w - layer.to_dense().detach().double()) / torch.linalg.norm(w))
    assert layer.truncation_error == pytest.approx(actual, rel=1e-5)
    assert 0.05 < layer.truncation_error < 1
    assert MPOLinear.from_linear(linear, out_shape=(2, 3, 4), bond_dim=3).in_shape == (3, 5, 4)


def test_state_dict_round_trip():
    layer = MPOLinear((2, 3, 4), (4, 3, 2), [3, 5], dtype=F64)
    clone = MPOLinear((2, 3, 4), (4, 3, 2), [3, 5], dtype=F64)
    assert not torch.equal(clone.to_dense(), layer.to_dense())
    clone.load_state_dict(layer.state_dict())
    x = torch.randn(4, 24, dtype=F64)
    torch.testing.assert_close(clone(x), layer(x), rtol=0, atol=0)
    assert set(layer.state_dict()) == {"cores.0", "cores.1", "cores.2", "bias"}
    conv = MPOConv2d(4, 6, 3, bond_dim=2, dtype=F64)
    conv_clone = MPOConv2d(4, 6, 3, bond_dim=2, dtype=F64)
    conv_clone.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv_clone.to_dense(), conv.to_dense(), rtol=0, atol=0)
    with pytest.raises(RuntimeError):  # different ranks do not load silently
        MPOLinear((2, 3, 4), (4, 3, 2), 2, dtype=F64).load_state_dict(layer.state_dict())


# ---------------------------------------------------------------------------------------------------------------
# MPOConv2d
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=8, kernel_size=(3, 2), stride=2, padding=1, bias=False),
    dict(in_channels=6, out_channels=4, kernel_size=3, dilation=2, padding="same", groups=2),
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=2, out_channels=4, kernel_size=(1, 3), padding=(0, 2), padding_mode="circular", stride=(1, 2)),
])
def test_mpo_conv2d_matches_conv2d_with_dense_kernel(kwargs):
    layer = MPOConv2d(**kwargs, bond_dim=3, dtype=F64)
    reference = nn.Conv2d(**kwargs, dtype=F64)   # nn.Conv2d's own padding/stride/groups handling
    assert layer.to_dense().shape == reference.weight.shape
    x = torch.randn(2, kwargs["in_channels"], 7, 6, dtype=F64)
    cores = [c.detach().clone() for c in layer.cores]
    bias = torch.randn(kwargs["out_channels"], dtype=F64) if layer.bias is not None else None

    def through_layer(x, cores, bias):
        return torch.func.functional_call(layer, _params_call(layer, cores, bias), (x,))

    def dense(x, cores, bias):
        params = {"weight": dense_by_eq5(cores).reshape(reference.weight.shape)}
        if bias is not None:
            params["bias"] = bias
        return torch.func.functional_call(reference, params, (x,))

    check_against_reference(through_layer, dense, [x, cores, bias] if bias is not None else [x, cores, None],
                            atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("x_shape,stride", [((3, 3, 4, 2), 1), ((3, 4, 2), 2), ((1, 3, 4, 2), (3, 1))])
def test_mpo_conv2d_over_the_whole_input_runs_the_chain(x_shape, stride, monkeypatch):
    """A kernel as large as the unpadded input is a linear map of the flattened input: the layer runs the planned
    chain on it (never reconstructing the kernel) and matches nn.Conv2d with the dense kernel, gradients too."""
    layer = MPOConv2d(3, 6, (4, 2), stride=stride, bond_dim=2, dtype=F64)
    reference = nn.Conv2d(3, 6, (4, 2), stride=stride, dtype=F64)
    monkeypatch.setattr(layer, "to_dense", lambda: pytest.fail("the whole-input case reconstructed the kernel"))
    x = torch.randn(*x_shape, dtype=F64)
    cores = [c.detach().clone() for c in layer.cores]
    bias = torch.randn(6, dtype=F64)

    def through_layer(x, cores, bias):
        return torch.func.functional_call(layer, _params_call(layer, cores, bias), (x,))

    def dense(x, cores, bias):
        params = {"weight": dense_by_eq5(cores).reshape(reference.weight.shape), "bias": bias}
        return torch.func.functional_call(reference, params, (x,))

    check_against_reference(through_layer, dense, [x, cores, bias], atol=1e-10, rtol=1e-9)


def test_mpo_conv2d_gradcheck_and_from_conv():
    layer = MPOConv2d(2, 4, 3, padding=1, bond_dim=2, dtype=F64)
    x = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *cores: torch.func.functional_call(
        layer, {f"cores.{k}": c for k, c in enumerate(cores)}, (x,)),
        (x, *[c.detach().clone().requires_grad_() for c in layer.cores]))
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, dtype=F64)
    exact = MPOConv2d.from_conv(conv)
    assert exact.truncation_error < 1e-13
    x = torch.randn(2, 8, 9, 9, dtype=F64)
    torch.testing.assert_close(exact(x), conv(x), rtol=1e-11, atol=1e-11)
    truncated = MPOConv2d.from_conv(conv, bond_dim=2)
    assert 0 < truncated.truncation_error < 1 and truncated.num_parameters < conv.weight.numel()
    assert (truncated.stride, truncated.padding) == ((2, 2), (1, 1))


def test_mpo_conv2d_init_variance():
    torch.manual_seed(1)
    layer = MPOConv2d(16, 32, 3, bond_dim=8, dtype=F64)
    ratios = [float(MPOConv2d(16, 32, 3, bond_dim=8, dtype=F64).to_dense().detach().pow(2).mean()) * 3 * 144
              for _ in range(100)]
    assert sum(ratios) / len(ratios) == pytest.approx(1.0, abs=0.1)
    assert layer.in_shape == mpo.factorize(144, 4) and layer.out_shape == mpo.factorize(32, 4)


# ---------------------------------------------------------------------------------------------------------------
# compress
# ---------------------------------------------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1))
        self.fc = nn.Linear(16 * 4 * 4, 64)
        self.head = nn.Linear(64, 10)
        self.tiny = nn.Linear(4, 2)

    def forward(self, x):
        h = self.features(x).flatten(1)
        return self.head(torch.relu(self.fc(h)))


def test_compress_replaces_layers_and_reports():
    torch.manual_seed(0)
    model = _Net().double()
    original = copy.deepcopy(model)
    report = physkernels.compress(model, 4, shapes={"fc": ((4, 4, 4, 4), (2, 4, 4, 2))})
    rows = {r.name: r for r in report.layers}
    assert set(rows) == {"features.0", "features.2", "fc", "head", "tiny"}
    assert isinstance(model.features[0], MPOConv2d) and isinstance(model.features[2], MPOConv2d)
    assert isinstance(model.fc, MPOLinear) and isinstance(model.head, MPOLinear)
    assert isinstance(model.tiny, nn.Linear) and not rows["tiny"].replaced and "kept dense" in rows["tiny"].reason
    assert (rows["fc"].in_shape, rows["fc"].out_shape) == ((4, 4, 4, 4), (2, 4, 4, 2))
    for name in ("features.0", "features.2", "fc", "head"):
        new, old, row = model.get_submodule(name), original.get_submodule(name), rows[name]
        assert row.replaced and row.weight_shape == tuple(old.weight.shape)
        assert row.params_before == old.weight.numel() and row.params_after == new.num_parameters
        assert row.params_after < row.params_before
        w_old = old.weight.detach().reshape(old.weight.shape[0], -1)
        w_new = new.to_dense().detach().reshape(w_old.shape)
        assert row.error == pytest.approx(float((w_old - w_new).norm() / w_old.norm()), rel=1e-9)
        torch.testing.assert_close(new.bias, old.bias, rtol=0, atol=0)
    replaced = [r for r in report.layers if r.replaced]
    assert report.compression_ratio == pytest.approx(
        sum(r.params_after for r in replaced) / sum(r.params_before for r in replaced))
    assert "compression ratio" in report.to_markdown() and "| fc |" in str(report)
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["params_after"] == report.params_after and as_json["layers"][2]["name"] == "fc"
    assert model(torch.randn(2, 3, 6, 6, dtype=F64)).shape == (2, 10)


def test_compress_at_full_bond_keeps_the_function():
    torch.manual_seed(1)
    model = _Net().double()
    original = copy.deepcopy(model)
    report = physkernels.compress(model, 10 ** 6, min_compression=math.inf, include=lambda n, m: n != "tiny")
    assert physkernels.compress(copy.deepcopy(original), 2, include=["fc"]).layers[0].name == "fc"
    assert all(r.replaced and r.error < 1e-12 for r in report.layers) and len(report.layers) == 4
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    torch.testing.assert_close(model(x), original(x), rtol=1e-10, atol=1e-10)
    partial = _Net()
    report = physkernels.compress(partial, {"head": 2})
    assert [r.name for r in report.layers] == ["head"] and isinstance(partial.head, MPOLinear)
    assert isinstance(partial.fc, nn.Linear)


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="bond_dim must be >= 1"):
        MPOLinear((2, 3), (3, 2), 0)
    with pytest.raises(ValueError, match=r"bond_dim\[1\] must be >= 1"):
        MPOLinear((2, 3, 2), (3, 2, 2), [2, 0])
    with pytest.raises(ValueError, match="bond_dim must be an int or a list of n-1 = 2"):
        MPOLinear((2, 3, 2), (3, 2, 2), [2, 2, 2])
    with pytest.raises(ValueError, match="bond_dim is a fraction"):
        MPOLinear((2, 3), (3, 2), 2.5)
    with pytest.raises(TypeError, match="bond_dim"):
        MPOLinear((2, 3), (3, 2), "2")
    with pytest.raises(TypeError, match="bond_dim"):
        MPOLinear((2, 3), (3, 2), None)
    with pytest.raises(ValueError, match="same number of factors"):
        MPOLinear((2, 3), (3, 2, 1), 2)
    with pytest.raises(ValueError, match=r"in_shape\[1\] must be >= 1"):
        MPOLinear((2, 0), (3, 2), 2)
    with pytest.raises(TypeError, match="out_shape must be a sequence"):
        MPOLinear((2, 3), "6", 2)
    assert MPOLinear((2, 3), 6, 2).out_shape == (2, 3)  # an int is a feature count, factorised
    with pytest.raises(ValueError, match="at least 2 cores"):
        MPOLinear((6,), (6,), 2)
    with pytest.raises(ValueError, match=r"prod\(in_shape\) must equal in_features=784"):
        MPOLinear.from_linear(nn.Linear(784, 256), (4, 7, 7, 5), (4, 4, 4, 4), bond_dim=2)
    with pytest.raises(TypeError, match="linear must be an nn.Linear"):
        MPOLinear.from_linear(nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match=r"prod\(in_shape\) must equal in_features=36"):
        MPOConv2d(4, 6, 3, bond_dim=2, in_shape=(2, 3, 5))
    with pytest.raises(TypeError, match="conv must be an nn.Conv2d"):
        MPOConv2d.from_conv(nn.Linear(2, 2))
    layer = MPOLinear((2, 3), (3, 2), 2)
    with pytest.raises(ValueError, match="x's last dimension must be prod"):
        layer(torch.randn(4, 5))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.randn(4, 6, dtype=F64))
    with pytest.raises(ValueError, match="shapes names layers"):
        physkernels.compress(_Net(), 2, shapes={"nope": ((2,), (2,))})
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        physkernels.compress("model", 2)
    with pytest.raises(TypeError, match="include must be a collection"):
        physkernels.compress(_Net(), 2, include="fc")
    with pytest.raises(ValueError, match="model is itself an nn.Linear"):
        physkernels.compress(nn.Linear(16, 16), 2)
    with pytest.raises(ValueError, match="bond_dim names layers"):
        physkernels.compress(_Net(), {"fc": 2, "nope": 2})
    with pytest.raises(TypeError, match="weight must be a 2-D"):
        mpo.tt_svd(torch.randn(6), (2, 3), (1, 1), 2)
    bad = random_cores((2, 3), (3, 2), (2,))
    bad[1] = bad[1][:1]
    with pytest.raises(ValueError, match="bond"):
        mpo.to_dense(bad)
    mixed = random_cores((2, 3), (3, 2), (2,))
    mixed[1] = mixed[1].float()
    with pytest.raises(TypeError, match=r"cores\[1\] has dtype"):
        mpo.bond_spectra(mixed)


def test_layers_trace_as_one_graph_under_torch_compile():
    """fullgraph=True: no graph breaks in the layers (aot_eager keeps the test fast; the op is opaque anyway)."""
    for layer, x in ((MPOLinear((2, 3, 4), (4, 3, 2), 3, dtype=F64), torch.randn(5, 24, dtype=F64)),
                     (MPOConv2d(4, 6, 3, padding=1, padding_mode="reflect", bond_dim=2, dtype=F64),
                      torch.randn(2, 4, 5, 5, dtype=F64))):
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        want_out, want_grads = _output_and_grads(layer, x)
        got_out, got_grads = _output_and_grads(compiled, x)
        torch.testing.assert_close(got_out, want_out)
        for g, w in zip(got_grads, want_grads):
            torch.testing.assert_close(g, w)


def _output_and_grads(module, x):
    out = module(x)
    params = list(module.parameters())
    return out.detach(), torch.autograd.grad(out.square().sum(), params)


# ---------------------------------------------------------------------------------------------------------------
# Whole training steps captured on a GPU
# ---------------------------------------------------------------------------------------------------------------
def _mpo_net(device):
    torch.manual_seed(5)
    return nn.Sequential(MPOLinear((4, 7, 7, 4), (4, 4, 4, 4), 4), nn.ReLU(),
                         MPOLinear((4, 4, 4, 4), (1, 1, 10, 1), 4)).to(device)


def _sgd_steps(net, x, y, steps, step_fn=None):
    """The parameters after ``steps`` SGD steps on (x, y) (``step_fn`` runs one step; default eager)."""
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def eager():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(steps):
        if step_fn is None:
            eager()
        else:
            step_fn(net, opt)
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mpo_training_step_captures_in_a_cuda_graph():
    """Forward, backward and optimizer step of an MPO net captured as one CUDA graph (no host sync or host-device
    copy inside the op) and replayed: the same parameters as the eager steps."""
    x, y = torch.randn(64, 784, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    want = _sgd_steps(_mpo_net("cuda"), x, y, 5)

    def graphed(net, opt):
        if not hasattr(graphed, "replay"):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: plans chosen, index tables on the device
                warm = copy.deepcopy(net)
                warm_opt = torch.optim.SGD(warm.parameters(), lr=0.1)
                for _ in range(2):
                    warm_opt.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(warm(x), y).backward()
                    warm_opt.step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
            graphed.replay = graph.replay
        graphed.replay()

    got = _sgd_steps(_mpo_net("cuda"), x, y, 5, graphed)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mpo_net_under_torch_compile_reduce_overhead():
    """torch.compile(mode="reduce-overhead") (CUDA graphs through inductor) of an MPO net: the same outputs and
    gradients as eager."""
    x = torch.randn(32, 784, device="cuda")
    net = _mpo_net("cuda")
    compiled = torch.compile(net, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):  # the first calls record, later ones replay
        out = compiled(x)
        grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    want = net(x)
    want_grads = torch.autograd.grad(want.square().sum(), list(net.parameters()))
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
