"""NN-QFT ensembles: RNG stream, kernels vs reference, physics checks (z-scores), couplings, distributed, errors."""

import math
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.integrate
import torch

import physkernels
from physkernels import _extensions
from physkernels.physics import nnqft
from physkernels.physics.nnqft import ensemble, philox
from devices import device_backend

HAS_CPP = physkernels.backends.why_unavailable("cpp") is None
needs_cpp = pytest.mark.skipif(not HAS_CPP, reason="physkernels._C not built")
FIG1_POINTS = [-0.01, -0.006, -0.002, 0.002, 0.006, 0.01]


# --------------------------------------------------------------------------------------------------- RNG stream
PHILOX_KAT = [  # Random123 known-answer vectors for philox4x32-10: counter, key, output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _cpp_philox(counters: np.ndarray, k0: int, k1: int) -> np.ndarray:
    c = torch.from_numpy(counters.astype(np.uint32).view(np.int32).copy())
    out = torch.empty_like(c)
    _extensions.cpu().nnqft.philox(c.data_ptr(), c.shape[0], k0, k1, out.data_ptr())
    return out.numpy().view(np.uint32)


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_known_answers_torch(counter, key, expected):
    out = philox.philox4x32_10(tuple(torch.tensor(c) for c in counter), key[0] | (key[1] << 32))
    assert tuple(int(o) for o in out) == expected


@needs_cpp
def test_philox_cpp_matches_torch_bit_for_bit():
    rng = np.random.default_rng(0)
    counters = rng.integers(0, 2**32, size=(500, 4), dtype=np.uint64)
    for counter, key, expected in PHILOX_KAT:
        assert tuple(_cpp_philox(np.array([counter]), *key)[0]) == expected
    seed = 0x1234_5678_9ABC_DEF0
    got = _cpp_philox(counters, seed & 0xFFFFFFFF, seed >> 32)
    ref = philox.philox4x32_10(tuple(torch.from_numpy(counters[:, i].astype(np.int64)) for i in range(4)), seed)
    np.testing.assert_array_equal(got, np.stack([r.numpy() for r in ref], 1).astype(np.uint32))


@needs_cpp
@pytest.mark.parametrize("kind,lo,hi,tol", [(0, -80.0, 80.0, 3e-7), (1, 2.0**-24, 1.0, 1e-6), (2, 0.0, 1.0, 5e-7),
                                            (3, 0.0, 1.0, 5e-7), (4, -6.0, 6.0, 5e-7)])
def test_kernel_float_math_accuracy(kind, lo, hi, tol):
    x = torch.rand(20011, generator=torch.Generator().manual_seed(kind), dtype=torch.float64) * (hi - lo) + lo
    xf = x.float().clamp_min(2.0**-24)
    out = torch.empty_like(xf)
    _extensions.cpu().nnqft.fast_math(kind, xf.data_ptr(), xf.numel(), out.data_ptr())
    xd = xf.double()
    ref = [torch.exp(xd), torch.log(xd), torch.sin(2 * math.pi * xd), torch.cos(2 * math.pi * xd), torch.erf(xd)][kind]
    err = (out.double() - ref).abs() / (ref.abs() if kind == 0 else 1.0)
    assert err.max() < tol


def test_normals_are_standard():
    nets = torch.arange(4000)
    z = philox.neuron_normals(torch.arange(50), nets, seed=7, n_normals=6).flatten()
    assert abs(z.mean()) < 5 / math.sqrt(z.numel())
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / z.numel())
    assert abs((z**4).mean() - 3) < 0.05


# ----------------------------------------------------------------------------------- kernels vs the reference
@needs_cpp
@pytest.mark.parametrize("d_in", [1, 2, 3, 7])
@pytest.mark.parametrize("activation", nnqft.ACTIVATIONS)
def test_cpp_outputs_match_reference(d_in, activation):
    pts = torch.randn(5, d_in, generator=torch.Generator().manual_seed(d_in), dtype=torch.float64) * 0.6
    kw = dict(width=67, n_nets=41, sigma_w=1.3, sigma_b=0.7, activation=activation, seed=2**40 + 11)
    got = nnqft.ensemble_outputs(pts, backend="cpp", **kw)
    ref = nnqft.ensemble_outputs(pts, backend="reference", **kw)
    torch.testing.assert_close(got, ref, rtol=2e-5, atol=2e-5 * ref.abs().max().item())


@needs_cpp
def test_cpp_green_matches_reference_and_outputs():
    pts = [-0.3, 0.1, 0.5]
    kw = dict(points=pts, max_n=4, width=9, n_bags=2, n_nets=300, sigma_w=1.2, sigma_b=0.5, seed=3)
    got = nnqft.green_functions(backend="cpp", **kw)
    ref = nnqft.green_functions(backend="reference", **kw)
    torch.testing.assert_close(got.per_bag, ref.per_bag, rtol=1e-5, atol=1e-9)
    f = nnqft.ensemble_outputs(pts, 9, 300, sigma_w=1.2, sigma_b=0.5, seed=3, backend="cpp")
    direct = got.table.products(f).mean(0)
    torch.testing.assert_close(got.per_bag[0], direct, rtol=1e-10, atol=1e-12)
    assert got.table.combos[got.order(3)[-1]] == (2, 2, 2)


@needs_cpp
def test_results_identical_across_thread_counts():
    kw = dict(points=FIG1_POINTS, max_n=4, width=13, n_bags=3, n_nets=700, seed=99, backend="cpp")
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nnqft.green_functions(**kw).per_bag
        f_one = nnqft.ensemble_outputs(FIG1_POINTS, 13, 333, seed=99, backend="cpp")
        torch.set_num_threads(2)
        two = nnqft.green_functions(**kw).per_bag
        f_two = nnqft.ensemble_outputs(FIG1_POINTS, 13, 333, seed=99, backend="cpp")
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, two) and torch.equal(f_one, f_two)


def test_triton_matches_reference_tiny():
    if physkernels.backends.why_unavailable("triton") is not None:
        pytest.skip(physkernels.backends.why_unavailable("triton"))
    pts = torch.tensor([[-0.2, 0.1, 0.3], [0.3, 0.05, -0.2], [0.0, -0.4, 0.1]], dtype=torch.float64)
    kw = dict(points=pts, max_n=3, width=3, n_bags=2, n_nets=20, sigma_w=1.1, sigma_b=0.6, seed=5)
    got = nnqft.green_functions(backend="triton", **kw)
    ref = nnqft.green_functions(backend="reference", **kw)
    torch.testing.assert_close(got.per_bag, ref.per_bag, rtol=1e-4, atol=1e-6)
    again = nnqft.green_functions(backend="triton", **kw)
    assert torch.equal(got.per_bag, again.per_bag)
    for points, activation in ((pts[:, :2], "erf"), (pts[:, 0], "relu")):  # d_in = 2 and 1
        out = {b: nnqft.ensemble_outputs(points, 3, 20, sigma_w=1.1, sigma_b=0.6, activation=activation, seed=2**63 + 5,
                                         backend=b) for b in ("triton", "reference")}
        torch.testing.assert_close(out["triton"], out["reference"], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ physics checks
@needs_cpp
@pytest.mark.parametrize("width", [2, 1000])
def test_two_point_equals_kernel_at_any_width(width):
    """Eq. 2.9: G2 = K at every N (z-scores over bags; 2-point moments have light enough tails)."""
    g = nnqft.green_functions([-0.8, -0.1, 0.4, 1.0], 2, width, n_bags=12, n_nets=2000 if width == 2 else 400,
                              sigma_w=1.0, sigma_b=0.5, seed=width)
    z = g.zscore[g.order(2)]
    assert z.abs().max() < 4.5, z
    kernel = nnqft.kernel([-0.8, -0.1, 0.4, 1.0], 1.0, 0.5)
    assert torch.allclose(g.gaussian[g.order(2)][0], kernel[0, 0])


@needs_cpp
def test_odd_green_functions_vanish():
    g = nnqft.green_functions([-0.5, 0.2, 0.6], 3, 4, n_bags=10, n_nets=3000, sigma_w=1.0, sigma_b=0.4, seed=1)
    for n in (1, 3):
        rows = g.order(n)
        assert torch.all(g.gaussian[rows] == 0) and torch.isnan(g.m[rows]).all()
        assert g.zscore[rows].abs().max() < 4.5


@needs_cpp
def test_four_point_deviation_matches_exact_finite_width_and_scales_as_one_over_n():
    """Delta G4 is the 4th cumulant, O(1/N); compare with its exact value (light-tailed parameters)."""
    pts = [-0.7, 0.0, 0.8]
    ratio = []
    for width in (2, 8):
        g = nnqft.green_functions(pts, 4, width, n_bags=16, n_nets=4000, sigma_w=1.0, sigma_b=0.3, seed=width)
        rows = g.order(4)
        combos = [g.table.combos[r] for r in rows.tolist()]
        exact = nnqft.exact_four_point_deviation(pts, combos, width, 1.0, 0.3)
        z = (g.delta[rows] - exact) / g.stderr[rows]
        assert z.abs().max() < 4.5, z
        assert (g.zscore[rows].abs() > 4).sum() >= len(rows) // 2  # the deviation is really measured
        ratio.append((g.m[rows] * width).mean().item())
    assert ratio[0] == pytest.approx(ratio[1], rel=0.35)  # m4 * N roughly constant: m4 ~ 1/N


def test_wick_matches_brute_force_gaussian_sampling():
    pts = torch.tensor([[-0.5, 0.1], [0.2, 0.3], [0.9, -0.4]], dtype=torch.float64)
    cov = nnqft.kernel(pts, 1.4, 0.6)
    table = nnqft.ComboTable(3, 4)
    g0 = nnqft.wick_expectations(cov, table)
    samples = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), cov).sample(
        (400000,))
    prods = table.products(samples)
    stderr = prods.std(0) / math.sqrt(prods.shape[0])
    assert ((prods.mean(0) - g0) / stderr).abs().max() < 4.5
    assert nnqft.gaussian_expectation(pts, [0, 1, 1, 2], 1.4, 0.6) == pytest.approx(
        float(cov[0, 1] * cov[1, 2] * 2 + cov[0, 2] * cov[1, 1]), rel=1e-12)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_erf_relu_kernels_match_wide_network_covariance(activation):
    pts = torch.tensor([[-1.0, 0.5], [0.3, 0.2], [1.2, -0.7]], dtype=torch.float64)
    f = nnqft.ensemble_outputs(pts, 64, 20000, sigma_w=1.3, sigma_b=0.4, activation=activation, seed=8,
                               backend="cpp" if HAS_CPP else "reference")
    emp = f.T @ f / f.shape[0]
    k = nnqft.kernel(pts, 1.3, 0.4, activation)
    assert torch.allclose(emp, k, rtol=0.05, atol=0.03)


# ------------------------------------------------------------------------------------------------ couplings
@pytest.mark.parametrize("n_legs", [4, 6])
def test_leg_integral_closed_form_vs_quadrature_1d(n_legs):
    legs = torch.tensor([-0.3, 0.1, 0.25, 0.6, -0.1, 0.4][:n_legs], dtype=torch.float64)[:, None]
    sw = 2.3
    closed = nnqft.leg_integral(legs, sw).item()
    integrand = lambda x: math.prod(sw**2 * math.exp(-sw**2 * (x - xi) ** 2 / 2) for xi in legs[:, 0].tolist())
    quad, _ = scipy.integrate.quad(integrand, -20, 20, points=[0.0], limit=200)
    assert closed == pytest.approx(quad, rel=1e-8)


def test_leg_integral_closed_form_vs_quadrature_2d():
    legs = torch.tensor([[-0.3, 0.2], [0.1, -0.4], [0.5, 0.5], [0.0, 0.3]], dtype=torch.float64)
    sw = 1.7
    closed = nnqft.leg_integral(legs, sw).item()

    def integrand(y, x):
        return math.prod(sw**2 * math.exp(-sw**2 * ((x - a) ** 2 + (y - b) ** 2) / 4) for a, b in legs.tolist())

    quad, _ = scipy.integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-11, epsrel=1e-10)
    assert closed == pytest.approx(quad, rel=1e-7)


@needs_cpp
def test_u4_u6_shapes_signs_and_fit():
    g = nnqft.green_functions([-0.5, 0.3, 0.6], 6, 3, n_bags=6, n_nets=3000, sigma_w=1.0, sigma_b=0.0, seed=4)
    u = nnqft.u4(g)
    assert u.shape == (6, len(g.order(4)))
    exact = nnqft.exact_u4(g)
    coincident = [i for i, r in enumerate(g.order(4).tolist()) if len(set(g.table.combos[r])) == 1]
    assert torch.all(exact[coincident] < 0)  # the paper: u4 < 0 (here at coincident points)
    z = (u.mean(0) - exact) / (u.std(0) / math.sqrt(u.shape[0]))
    assert z.abs().max() < 5, z
    assert nnqft.u6(g).shape == (6, len(g.order(6)))
    sw = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    fit = nnqft.fit_power_law(sw, -3.0 * sw**1.5, 0.01 * sw**1.5)
    assert fit.slope == pytest.approx(1.5, abs=1e-9) and math.exp(fit.intercept) == pytest.approx(3.0)
    assert nnqft.predicted_slope(4, 1) == 3 and nnqft.predicted_slope(6, 3) == 0


# ----------------------------------------------------------------------------------------------- distributed
_DIST_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    from physkernels.physics import nnqft

    def work(rank, port, out, backend):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        torch.set_num_threads(1)
        g = nnqft.green_functions([-0.01, 0.0, 0.02], 4, 7, n_bags=5, n_nets=300, seed=21, backend=backend)
        if rank == 0:
            torch.save(g.per_bag, out)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(work, args=(int(sys.argv[1]), sys.argv[2], sys.argv[3]), nprocs=2)
""")


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_equal_one_process(tmp_path):
    script, out = tmp_path / "dist_nnqft.py", tmp_path / "per_bag.pt"
    script.write_text(_DIST_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the children import the same physkernels as this process (installed or source tree)
    package_root = os.path.dirname(os.path.dirname(physkernels.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
    backend = "cpp" if HAS_CPP else "reference"
    subprocess.run([sys.executable, str(script), str(port), str(out), backend], check=True, timeout=120, env=env)
    single = nnqft.green_functions([-0.01, 0.0, 0.02], 4, 7, n_bags=5, n_nets=300, seed=21, backend=backend)
    assert torch.equal(torch.load(out), single.per_bag)


def test_bag_ranges_cover_all_bags():
    from physkernels.physics.nnqft.distributed import bag_range

    for n_bags in (1, 5, 20):
        for world in (1, 2, 3, 8):
            ranges = [bag_range(n_bags, r, world) for r in range(world)]
            assert sum(c for _, c in ranges) == n_bags
            assert all(ranges[r][0] + ranges[r][1] == ranges[r + 1][0] for r in range(world - 1))


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(width=0), ValueError, "width"),
    (dict(width=2.5), TypeError, "width"),
    (dict(sigma_w=-1.0), ValueError, "sigma_w"),
    (dict(sigma_b=float("nan")), ValueError, "sigma_b"),
    (dict(n_nets=1), ValueError, "n_nets"),
    (dict(n_bags=0), ValueError, "n_bags"),
    (dict(max_n=0), ValueError, "max_n"),
    (dict(activation="tanh"), ValueError, "activation"),
    (dict(points=torch.zeros(2, 2, 2)), ValueError, "points"),
    (dict(points=torch.zeros(0, 1)), ValueError, "points"),
    (dict(points="abc"), TypeError, "points"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_input_is_rejected_clearly(kwargs, exc, match):
    args = dict(points=[0.0, 0.1], max_n=2, width=3, n_bags=2, n_nets=10)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        nnqft.green_functions(**args)


def test_bad_input_elsewhere():
    with pytest.raises(ValueError, match="activation"):
        nnqft.kernel([0.0], activation="sigmoid")
    with pytest.raises(ValueError, match="combo"):
        nnqft.gaussian_expectation([0.0, 1.0], [0, 2])
    with pytest.raises(ValueError, match="n_nets"):
        nnqft.ensemble_outputs([0.0], 3, 1)
    g = nnqft.green_functions([0.0, 0.1], 4, 2, 2, 10, activation="relu", backend="reference")
    with pytest.raises(ValueError, match="Gauss-net"):
        nnqft.u4(g)
    with pytest.raises(physkernels.BackendUnavailableError):
        ensemble.bag_sums(torch.zeros(1, 1, dtype=torch.float64), nnqft.NetworkLaw(2), 0, 1, 4,
                          nnqft.ComboTable(1, 2), backend="cuda")


# -------------------------------------------------------------------------------------------------- drivers
@needs_cpp
@pytest.mark.parametrize("figure", ["fig1", "fig2"])
def test_driver_quick_run_writes_json_and_plots(figure, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from models import nnqft as driver

    assert driver.main([figure, "--quick", "--out", str(tmp_path)]) == 0
    import json

    result = json.loads((tmp_path / "results.json").read_text())
    assert result["figure"] == int(figure[-1])
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) >= 2 and all(name.endswith("_quick.png") for name in pngs), pngs  # labelled as quick
    assert result["quick"] is True
    if figure == "fig2":
        fits = result["series"]
        assert {s["d_in"] for s in fits} == {1, 2, 3} and all("fit_u4" in s for s in fits)  # none dropped
    else:
        assert all(abs(r["m_2_stats"]["mean"]) < 0.2 for r in result["widths"])


# ------------------------------------------------------------------------------------------- every device
@pytest.mark.parametrize("device,backend", device_backend())
def test_green_functions_match_reference_on_every_device(device, backend):
    """The compiled kernels (C++ on the CPU; CUDA and Triton on a GPU) against the plain-torch ensemble: Green
    functions per bag and the networks' outputs for every activation. The kernels evaluate activations in
    float32 and accumulate in float64 (ensemble.py)."""
    pts = torch.tensor([[-0.2, 0.1], [0.3, 0.05], [0.0, -0.4]], dtype=torch.float64)
    kw = dict(max_n=4, width=5, n_bags=3, n_nets=500, sigma_w=1.1, sigma_b=0.6, seed=5)
    got = nnqft.green_functions(pts.to(device), backend=backend, **kw)
    want = nnqft.green_functions(pts, backend="reference", **kw)
    tol = dict(rtol=1e-4, atol=1e-5 * want.per_bag.abs().max().item())
    torch.testing.assert_close(got.per_bag.cpu(), want.per_bag, **tol)
    for activation in ("erf", "relu", "gauss"):
        out = {b: nnqft.ensemble_outputs(p, 4, 64, sigma_w=1.1, sigma_b=0.6, activation=activation, seed=7,
                                         backend=b).cpu()
               for b, p in ((backend, pts.to(device)), ("reference", pts))}
        torch.testing.assert_close(out[backend], out["reference"], rtol=1e-4, atol=1e-5)
