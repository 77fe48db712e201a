"""2D Ising Monte Carlo: exact results, samplers vs exact, RNG determinism, multispin vs reference, bad input."""

import math
import os

import numpy as np
import pytest
import torch

from physkernels.physics import ising
from physkernels.physics.ising import engines
from physkernels.physics.ising.exact import elliptic_k
from physkernels.physics.ising.observables import integrated_autocorrelation_time, mean_and_error
from devices import needs_gpu

COMPILED = engines.CppWolffEngine.available()
needs_cpp = pytest.mark.skipif(not COMPILED, reason="physkernels._C not built")
BETAS = (0.01, 0.2, 0.4352, ising.BETA_C, 0.6, 1.3)


# ---------------------------------------------------------------- exact results
@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("beta", BETAS)
def test_exact_matches_enumeration(L, beta):
    got, want = ising.exact(L, beta), ising.brute_force(L, beta)
    for key in ("logZ", "energy", "specific_heat"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-11), key


@pytest.mark.parametrize("beta", [8.0, 12.0, 400.0])
def test_exact_at_low_temperature(beta):
    got, want = ising.exact(3, beta), ising.brute_force(3, beta)
    assert got["logZ"] == pytest.approx(want["logZ"], rel=1e-12)
    assert got["energy"] == pytest.approx(-2.0, abs=1e-12)
    assert got["specific_heat"] == pytest.approx(want["specific_heat"], abs=1e-12)  # enumeration: ~1e-14 noise
    big = ising.exact(64, beta)
    assert math.isfinite(big["logZ"]) and big["energy"] == pytest.approx(-2.0, abs=1e-12)


def test_exact_infinite_volume_limits():
    for beta in (0.2, 0.35, 0.5, 0.8):
        assert ising.exact(2048, beta)["energy"] == pytest.approx(ising.onsager_energy(beta), abs=1e-9)
    assert ising.onsager_energy(ising.BETA_C) == pytest.approx(-math.sqrt(2.0))
    # free energy density at beta_c: ln 2 / 2 + 2G / pi (G: Catalan's constant)
    catalan = 0.915965594177219015
    assert ising.exact(2048, ising.BETA_C)["logZ"] / 2048**2 == pytest.approx(0.5 * math.log(2) + 2 * catalan / math.pi,
                                                                            abs=1e-6)
    # the specific heat at beta_c grows like (8 / pi) K_c^2 ln L
    c64, c128 = (ising.exact(L, ising.BETA_C)["specific_heat"] for L in (64, 128))
    assert c128 - c64 == pytest.approx(8 / math.pi * ising.BETA_C**2 * math.log(2), rel=1e-2)


def test_elliptic_k_matches_scipy():
    from scipy.special import ellipk

    for k in (0.0, 0.1, 0.5, 0.9, 0.999, 0.999999):
        assert elliptic_k(k) == pytest.approx(float(ellipk(k * k)), rel=1e-10)  # k*k rounds near k = 1
    assert ising.onsager_energy(0.4352) == pytest.approx(ising.exact(4096, 0.4352)["energy"], abs=1e-9)


def test_spontaneous_magnetization():
    assert ising.spontaneous_magnetization(0.3) == 0.0
    assert ising.spontaneous_magnetization(ising.BETA_C) == 0.0
    assert ising.spontaneous_magnetization(5.0) == pytest.approx(1.0, abs=1e-12)
    # near beta_c: M ~ (8 sqrt2 K_c t)^(1/8)-type power law with exponent 1/8
    t1, t2 = 1e-6, 1e-4
    m1, m2 = (ising.spontaneous_magnetization(ising.BETA_C + t) for t in (t1, t2))
    assert math.log(m2 / m1) / math.log(t2 / t1) == pytest.approx(0.125, rel=1e-3)


# ---------------------------------------------------------------- autocorrelation estimator
def test_integrated_autocorrelation_time_of_ar1():
    phi, rng = 0.8, np.random.default_rng(3)
    noise = rng.standard_normal((64, 4000))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, x.shape[1]):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    want = 0.5 * (1 + phi) / (1 - phi)  # = 4.5
    assert integrated_autocorrelation_time(x) == pytest.approx(want, rel=0.05)
    assert integrated_autocorrelation_time(rng.standard_normal((8, 2000))) == pytest.approx(0.5, abs=0.05)


# ---------------------------------------------------------------- equilibrium distribution at L = 2 and 4
def _exact_energy_distribution(L, beta):
    configs = np.array(list(np.ndindex(*(2,) * (L * L)))) * 2 - 1
    energy = ising.energy_per_spin(torch.tensor(configs).reshape(-1, L, L)).numpy() * L * L
    weights = np.exp(-beta * (energy - energy.min()))
    levels = np.unique(np.round(energy).astype(int))
    probs = np.array([weights[np.round(energy) == e].sum() for e in levels]) / weights.sum()
    return levels, probs


def _chi_square_pvalue(observed, expected_probs):
    from scipy.stats import chisquare

    keep = expected_probs * observed.sum() > 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected_probs[keep], expected_probs[~keep].sum()) * observed.sum()
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return chisquare(obs, exp).pvalue


@pytest.mark.parametrize("algorithm,backend", [(a, b) for a in ising.ALGORITHMS for b in ("cpp", "reference")])
@pytest.mark.parametrize("L", [2, 4])
def test_energy_histogram_matches_boltzmann(algorithm, backend, L):
    if backend == "cpp" and not COMPILED:
        pytest.skip("physkernels._C not built")
    if algorithm == "metropolis" and L == 2:
        pytest.skip("checkerboard Metropolis is not ergodic at L = 2 (rejected by sample)")
    beta = 0.35
    # the numpy Wolff reference is the slowest engine: fewer samples (the test keeps its power at these sizes)
    n, chains = (2000, 200) if (algorithm, backend) == ("wolff", "reference") else (6000, 600)
    x = ising.sample(L, beta, n, algorithm, seed=11, backend=backend, n_chains=chains)
    energy = np.round(ising.energy_per_spin(x).numpy() * L * L).astype(int)
    levels, probs = _exact_energy_distribution(L, beta)
    observed = np.array([(energy == e).sum() for e in levels])
    assert observed.sum() == len(x)
    assert _chi_square_pvalue(observed, probs) > 1e-3


# ---------------------------------------------------------------- MC vs exact (3 sigma, measured tau)
def _check_energy(L, beta, algorithm, n_samples, n_chains, seed, backend="auto"):
    x, info = ising.sample(L, beta, n_samples, algorithm, seed=seed, n_chains=n_chains, return_info=True,
                           backend=backend)
    assert info.spacing >= 2 * info.tau - 1e-9
    assert info.thermalization_steps >= ising.sampler.THERMALIZATION_TAUS * info.tau
    # series per chain: sample i comes from chain i % n_chains
    energy = ising.energy_per_spin(x).numpy().reshape(-1, n_chains).T
    mean, err = mean_and_error(energy)
    want = ising.exact(L, beta)["energy"]
    assert abs(mean - want) < 3 * err, (algorithm, L, beta, mean, want, err, info)
    return info


@needs_cpp
@pytest.mark.parametrize("algorithm", ising.ALGORITHMS)
@pytest.mark.parametrize("L", [8, 32])
@pytest.mark.parametrize("beta", [0.4352, ising.BETA_C])
def test_mc_energy_matches_kaufman(algorithm, L, beta):
    n_chains = 256 if algorithm == "metropolis" else 128
    _check_energy(L, beta, algorithm, 2048 if L == 32 else 4096, n_chains, seed=5)


@pytest.mark.parametrize("algorithm,n_samples,n_chains", [("swendsen_wang", 2000, 100), ("wolff", 600, 60),
                                                          ("metropolis", 2000, 100)])
def test_reference_engines_energy_matches_kaufman(algorithm, n_samples, n_chains):
    """The numpy reference engines (a public backend) against the exact energy, whether or not _C is built."""
    _check_energy(8, 0.4352, algorithm, n_samples, n_chains, seed=2, backend="reference")


def test_reference_swendsen_wang_energy_at_high_temperature():
    x = ising.sample(6, 0.3, 3000, "swendsen_wang", seed=4, n_chains=100, backend="reference")
    mean, err = mean_and_error(ising.energy_per_spin(x).numpy().reshape(-1, 100).T)
    assert abs(mean - ising.exact(6, 0.3)["energy"]) < 3 * err


# ---------------------------------------------------------------- multispin vs plain Metropolis
@needs_cpp
def test_multispin_metropolis_matches_reference_statistics():
    L, beta, n = 8, 0.3, 128 * 30
    stats = {}
    for backend in ("cpp", "reference"):
        x = ising.sample(L, beta, n, "metropolis", seed=9, backend=backend, n_chains=128)
        stats[backend] = [mean_and_error(f(x).numpy().reshape(-1, 128).T)
                          for f in (ising.energy_per_spin, lambda c: ising.magnetization_per_spin(c).abs())]
    for (m1, e1), (m2, e2) in zip(stats["cpp"], stats["reference"]):
        assert abs(m1 - m2) < 4 * math.hypot(e1, e2)


@needs_cpp
def test_multispin_relaxation_matches_reference():
    """Non-equilibrium check: mean energy after each of the first sweeps from the same random start."""
    L, beta, n_chains, sweeps = 8, 0.4, 4096, 6
    curves = []
    for engine_cls in (engines.CppMetropolisEngine, engines.ReferenceMetropolisEngine):
        engine = engine_cls(L, beta, n_chains, seed=21)
        energy, _ = engine.run(sweeps, record=True)
        curves.append((energy.mean(axis=0), energy.std(axis=0) / math.sqrt(n_chains)))
    (a, ea), (b, eb) = curves
    assert np.all(np.abs(a - b) < 4 * np.hypot(ea, eb)), (a, b)


# ---------------------------------------------------------------- determinism
@needs_cpp
@pytest.mark.parametrize("algorithm", ising.ALGORITHMS)
def test_same_result_for_any_thread_count(algorithm):
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(ising.sample(12, 0.42, 300, algorithm, seed=123, n_chains=150))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])
    other_seed = ising.sample(12, 0.42, 300, algorithm, seed=124, n_chains=150)
    assert not torch.equal(results[0], other_seed)


@needs_cpp
def test_engine_runs_continue_exactly():
    """Counter-based RNG: two runs of n steps equal one run of 2n steps."""
    for cls in (engines.CppMetropolisEngine, engines.CppWolffEngine, engines.CppSwendsenWangEngine):
        a, b = cls(8, 0.4, 70, 3), cls(8, 0.4, 70, 3)
        a.run(3), a.run(4)
        b.run(7)
        assert torch.equal(a.configs(), b.configs()), cls.__name__


# ---------------------------------------------------------------- Triton / CUDA kernels (same bits as C++)
@needs_cpp
@pytest.mark.parametrize("beta,L", [(0.0, 6), (0.3, 6), (ising.BETA_C, 6), (1.1, 6), (ising.BETA_C, 34)])
def test_triton_metropolis_is_bit_identical_to_cpp(beta, L):
    """L = 34: 578 sites of each colour, three Triton blocks per lattice (the last one partial)."""
    if not engines.TritonMetropolisEngine.available():
        pytest.skip("triton unavailable")
    cpp = engines.CppMetropolisEngine(L, beta, 100, seed=17)
    tri = engines.TritonMetropolisEngine(L, beta, 100, seed=17)
    assert torch.equal(cpp.words, tri.words.cpu())
    cpp.run(2), tri.run(2)
    cpp.run(1), tri.run(1)
    assert torch.equal(cpp.words, tri.words.cpu())
    assert torch.equal(cpp.configs(), tri.configs())


@needs_cpp
@pytest.mark.skipif(not engines.CudaMetropolisEngine.available(), reason="needs a GPU and physkernels._C_cuda")
def test_cuda_metropolis_is_bit_identical_to_cpp():
    cpp = engines.CppMetropolisEngine(32, 0.4352, 1000, seed=3)
    gpu = engines.CudaMetropolisEngine(32, 0.4352, 1000, seed=3)
    cpp.run(25), gpu.run(25)
    torch.cuda.synchronize()
    assert torch.equal(cpp.words, gpu.words.cpu())


def test_word_packing_round_trip():
    spins = engines.random_spins(130, 6, seed=1)
    words = engines.pack_words(spins)
    assert words.shape == (3, 6, 6)
    assert torch.equal(engines.unpack_words(words, 130), spins)
    if COMPILED:
        assert torch.equal(pack_like_cpp(spins), words)
        padded = engines.random_spins(192, 6, seed=1)  # the engine starts from whole words of chains
        assert torch.equal(engines.CppMetropolisEngine(6, 0.3, 130, seed=1).words, engines.pack_words(padded))


def pack_like_cpp(spins):
    from physkernels import _extensions

    words = torch.empty((-(-spins.shape[0] // 64),) + tuple(spins.shape[1:]), dtype=torch.int64)
    _extensions.cpu().ising.pack_spins(spins.data_ptr(), spins.shape[0], spins.shape[-1], words.data_ptr(), 1)
    return words


def test_sample_output_and_info():
    x, info = ising.sample(6, 0.3, 50, "swendsen_wang", seed=1, n_chains=20, return_info=True)
    assert x.shape == (50, 6, 6) and x.dtype == torch.int8
    assert set(x.unique().tolist()) <= {-1, 1}
    assert info.n_samples == 50 and info.n_chains == 20 and info.spacing >= max(1, 2 * info.tau - 1e-9)
    assert set(info.to_dict()) >= {"seed", "algorithm", "tau_energy", "tau_abs_magnetization", "spacing"}
    again = ising.sample(6, 0.3, 50, "swendsen_wang", seed=1, n_chains=20)
    assert torch.equal(x, again)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    (dict(L=1), "L must be"), (dict(L=2.5), "L must be"), (dict(beta=-0.1), "beta must be >= 0"),
    (dict(beta=float("nan")), "beta must be a finite"), (dict(algorithm="heatbath"), "algorithm must be one of"),
    (dict(n_samples=0), "n_samples"), (dict(L=7, algorithm="metropolis"), "even L"), (dict(L=2, algorithm="metropolis"), "even L"), (dict(seed=-1), "seed"),
    (dict(backend="fortran"), "backend"), (dict(n_chains=0), "n_chains"), (dict(spacing=0), "spacing"),
])
def test_sample_rejects_bad_input(kwargs, match):
    args = dict(L=8, beta=0.4, n_samples=4, algorithm="wolff")
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        ising.sample(**args)


def test_exact_rejects_bad_input():
    with pytest.raises(ValueError, match="L must be"):
        ising.exact(1, 0.4)
    with pytest.raises(ValueError, match="beta must be"):
        ising.exact(8, -1.0)
    with pytest.raises(ValueError, match="beta must be"):
        ising.onsager_energy(-0.5)
    with pytest.raises(ValueError, match="L <= 4"):
        ising.brute_force(5, 0.4)


# ---------------------------------------------------------------- data sets
@needs_cpp
def test_datasets_cli_writes_reproducible_files(tmp_path):
    from physkernels.physics.ising import datasets

    path = datasets.main(["critical", "--n", "70", "--L", "8", "--seed", "3", "--out", str(tmp_path)])
    data = datasets.load_dataset(path)
    assert data["configs"].shape == (70, 8, 8) and data["decimated_1"].shape == (70, 8, 4)
    assert data["decimated_2"].shape == (70, 4, 4)
    assert torch.equal(data["decimated_2"], data["configs"][:, ::2, ::2])
    meta = data["meta"]
    assert meta["seed"] == 3 and meta["algorithm"] == "wolff" and meta["spacing"] >= 2 * meta["tau_energy"] - 1e-9
    assert (tmp_path / (os.path.basename(path)[:-3] + ".json")).exists()
    again = datasets.critical_dataset(70, 8, 0.4352, seed=3, progress=False)
    assert torch.equal(again["configs"], data["configs"])

    path = datasets.main(["wide", "--n", "50", "--L", "8", "--seed", "1", "--out", str(tmp_path)])
    wide = datasets.load_dataset(path)
    assert wide["configs"].shape == (50, 8, 8) and wide["betas"].shape == (50,)
    assert float(wide["betas"].min()) >= 0.01 and float(wide["betas"].max()) < 0.6
    assert wide["meta"]["thermalization_sweeps"] >= 20 * wide["meta"]["tau_max"]
    again = datasets.wide_range_dataset(50, 8, seed=1, progress=False)
    assert torch.equal(again["configs"], wide["configs"]) and torch.equal(again["betas"], wide["betas"])
    # hot chains are disordered, cold chains ordered
    m = ising.magnetization_per_spin(wide["configs"]).abs()
    assert m[wide["betas"] > 0.55].mean() > 0.9 > 0.5 > m[wide["betas"] < 0.2].mean()


@needs_cpp
def test_validation_driver_quick(tmp_path):
    from models import ising_mc

    rows = ising_mc.main(["--L", "8", "--betas", "0.3", "0.5", "--samples", "512", "--algorithms", "swendsen_wang",
                          "--out", str(tmp_path)])
    assert len(rows) == 2 and all(abs(r["pull"]) < 4 for r in rows)
    assert {p.name for p in tmp_path.iterdir()} >= {"results.json", "energy.png", "specific_heat.png", "tau.png"}


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("engine", ["TritonMetropolisEngine", "CudaMetropolisEngine"])
def test_gpu_metropolis_engine_matches_cpp_bit_for_bit(engine):
    cls = getattr(engines, engine)
    if not (cls.available() and engines.CppMetropolisEngine.available()):
        pytest.skip(f"{engine} or the C++ engine unavailable")
    cpp, gpu = engines.CppMetropolisEngine(16, 0.44, 300, seed=9), cls(16, 0.44, 300, seed=9)
    for steps in (1, 7, 3):
        cpp.run(steps), gpu.run(steps)
    torch.cuda.synchronize()
    assert torch.equal(cpp.words, gpu.words.cpu())
