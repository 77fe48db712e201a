"""Decimation RG, the flow, hard-coded weights, local entropy, Table I networks, training loop and the driver."""

import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from physkernels.physics import rg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_spins(*shape, seed=0):
    return torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed)).to(torch.int8) * 2 - 1


# ------------------------------------------------------------------------------------------------ decimation
def decimate_by_loops(x: np.ndarray) -> np.ndarray:
    """Fig. 2 by hand: keep the sites with r + c even, row by row (the packed L x L/2 layout)."""
    L = x.shape[0]
    return np.array([[x[r, c] for c in range(L) if (r + c) % 2 == 0] for r in range(L)])


@pytest.mark.parametrize("L", [2, 4, 6, 10])
def test_decimate_matches_direct_definition(L):
    x = random_spins(3, L, L, seed=L)
    once = rg.decimate(x)
    assert once.shape == (3, L, L // 2) and once.dtype == x.dtype
    for b in range(3):
        np.testing.assert_array_equal(once[b].numpy(), decimate_by_loops(x[b].numpy()))
    twice = rg.decimate(once)
    assert twice.shape == (3, L // 2, L // 2)
    assert torch.equal(twice, x[:, ::2, ::2])


def test_decimated_lattice_keeps_diagonal_neighbours():
    """Packed (r, k) is site (r, 2k + r % 2): its neighbours on the rotated lattice are the diagonal ones."""
    L = 8
    index = torch.arange(L * L).reshape(L, L)
    packed = rg.decimate(index)
    for r, k in itertools.product(range(L), range(L // 2)):
        site = int(packed[r, k])
        assert (site // L, site % L) == (r, 2 * k + r % 2)


@pytest.mark.parametrize("L", [8, 32])
def test_hard_coded_weights_equal_decimation(L):
    w1, w2 = rg.decimation_weights(L, 1), rg.decimation_weights(L, 2)
    assert w1.shape == (L * L, L * L // 2) and w2.shape == (L * L // 2, L * L // 4)
    # Eq. 7 and 8 literally: a row is used iff floor(i / L) + i (resp. floor(i / (L/2))) is even; one 1 per column.
    i1, i2 = torch.arange(L * L), torch.arange(L * L // 2)
    assert torch.equal(w1.sum(1) == 1, ((i1 // L + i1) % 2 == 0))
    assert torch.equal(w2.sum(1) == 1, ((i2 // (L // 2)) % 2 == 0))
    assert torch.all(w1.sum(0) == 1) and torch.all(w2.sum(0) == 1)
    x = random_spins(5, L, L, seed=1).float()
    d1 = rg.decimate(x)
    assert torch.equal(x.flatten(1) @ w1, d1.flatten(1))
    assert torch.equal(d1.flatten(1) @ w2, rg.decimate(d1).flatten(1))


def test_decimation_bad_input():
    with pytest.raises(ValueError, match="even"):
        rg.decimate(torch.ones(5, 5))
    with pytest.raises(ValueError, match="even"):
        rg.decimate(torch.ones(2, 7, 7))
    with pytest.raises(ValueError, match="square lattice"):
        rg.decimate(torch.ones(6, 4))
    with pytest.raises(ValueError, match="shape"):
        rg.decimate(torch.ones(6))
    with pytest.raises(TypeError, match="torch.Tensor"):
        rg.decimate(np.ones((4, 4)))
    with pytest.raises(ValueError, match="even"):
        rg.decimation_weights(7, 1)
    with pytest.raises(ValueError, match="step"):
        rg.decimation_weights(8, 3)


# ------------------------------------------------------------------------------------------------------- flow
def test_flow_formula_and_stability():
    for beta in (0.0, 0.1, 0.4352, 0.8):
        assert rg.flow_beta(beta) == pytest.approx(0.375 * math.log(math.cosh(4 * beta)), rel=1e-12, abs=1e-15)
    assert rg.flow_beta(100.0) == pytest.approx(0.375 * (400 - math.log(2)), rel=1e-12)
    betas = torch.tensor([0.0, 0.2, 0.5, 50.0], dtype=torch.float64)
    expected = torch.tensor([rg.flow_beta(float(b)) for b in betas], dtype=torch.float64)
    torch.testing.assert_close(rg.flow_beta(betas), expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="beta"):
        rg.flow_beta(-0.1)
    with pytest.raises(ValueError, match="beta"):
        rg.flow_beta(torch.tensor([-0.1]))


def test_flow_fixed_point_is_unstable():
    star = rg.flow_fixed_point()
    assert rg.flow_beta(star) == pytest.approx(star, abs=1e-12)
    assert 0.505 < star < 0.508  # paper: 0.505
    assert rg.BETA_C == pytest.approx(0.4406868, abs=1e-7)
    # RG repels from beta*: below it the coupling shrinks, above it grows.
    assert rg.flow_beta(star - 0.05) < star - 0.05 and rg.flow_beta(star + 0.05) > star + 0.05


@pytest.mark.parametrize("beta", [0.1, 0.4352, 0.7])
def test_flow_from_summing_out_one_spin(beta):
    """Eq. 3-5 from scratch: log(2 cosh(beta * (B1+B2+B3+B4))) over the 16 configurations of the four blue
    neighbours is exactly const + c_nn * (nn pairs of the square) + c_diag * (diagonal pairs) + c_4 * quartet; each
    new nearest-neighbour bond borders two decimated sites, so beta' = 2 c_nn + c_diag (quartet dropped)."""
    rows, target = [], []
    for s in itertools.product((-1, 1), repeat=4):
        s1, s2, s3, s4 = s
        rows.append([1, s1 * s2 + s2 * s3 + s3 * s4 + s4 * s1, s1 * s3 + s2 * s4, s1 * s2 * s3 * s4])
        target.append(math.log(2 * math.cosh(beta * sum(s))))
    coef, residual, *_ = np.linalg.lstsq(np.array(rows, float), np.array(target), rcond=None)
    assert np.allclose(np.array(rows, float) @ coef, target, atol=1e-12)  # the expansion is exact
    assert 2 * coef[1] + coef[2] == pytest.approx(rg.flow_beta(beta), rel=1e-10)


# ---------------------------------------------------------------------------------------------------- entropy
def entropy_by_direct_count(x: np.ndarray, size: int, boundary: str) -> np.ndarray:
    rows, cols = x.shape
    half = size // 2
    out = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            values = []
            for dr in range(-half, half + 1):
                for dc in range(-half, half + 1):
                    rr, cc = r + dr, c + dc
                    if boundary == "periodic":
                        values.append(x[rr % rows, cc % cols])
                    elif 0 <= rr < rows and 0 <= cc < cols:
                        values.append(x[rr, cc])
            counts = np.unique(np.array(values) > 0, return_counts=True)[1]
            p = counts / counts.sum()
            out[r, c] = -(p * np.log2(p)).sum()
    return out


@pytest.mark.parametrize("shape,size,boundary", [((6, 6), 3, "periodic"), ((5, 7), 3, "periodic"),
                                                 ((5, 7), 3, "open"), ((9, 8), 5, "periodic"),
                                                 ((4, 6), 5, "open")])
def test_local_entropy_matches_direct_count(shape, size, boundary):
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float64)
    got = rg.local_entropy(x, size, boundary)
    for b in range(2):
        np.testing.assert_allclose(got[b].numpy(), entropy_by_direct_count(x[b].numpy(), size, boundary),
                                   atol=1e-12)
    torch.testing.assert_close(rg.lattice_entropy(x, size, boundary), got.mean(dim=(-2, -1)))


def test_local_entropy_known_values():
    assert torch.all(rg.local_entropy(torch.ones(6, 6)) == 0)
    checkerboard = (torch.arange(6)[:, None] + torch.arange(6)) % 2 * 2 - 1
    p = torch.tensor([4 / 9, 5 / 9], dtype=torch.float64)
    torch.testing.assert_close(rg.local_entropy(checkerboard), torch.full((6, 6), float(-(p * p.log2()).sum()),
                                                                            dtype=torch.float64))


def test_local_entropy_bad_input():
    with pytest.raises(ValueError, match="odd"):
        rg.local_entropy(torch.ones(6, 6), size=2)
    with pytest.raises(ValueError, match="boundary"):
        rg.local_entropy(torch.ones(6, 6), boundary="reflect")
    with pytest.raises(ValueError, match="at least"):
        rg.local_entropy(torch.ones(2, 6))
    with pytest.raises(TypeError):
        rg.local_entropy([[1, -1]])


# --------------------------------------------------------------------------------------------------- networks
def test_paper_architecture_and_names():
    assert rg.layer_sizes(32) == (1024, 512, 256, 512, 1024)
    model = rg.build_model("model1", 32)
    shapes = [tuple(rg.weight_matrix(getattr(model, n)).shape) for n in ("enc1", "enc2", "dec1", "dec2")]
    assert shapes == [(1024, 512), (512, 256), (256, 512), (512, 1024)]
    assert all(getattr(model, n).bias is None for n in ("enc1", "enc2", "dec1", "dec2"))
    names = [rg.shallow_name(r, 32) for r in ("CG1", "CG2", "UP1", "UP2", "HCG1", "HCG2")]
    assert names == ["CG-1024-512", "CG-512-256", "UP-256-512", "UP-512-1024", "HCG-1024-512", "HCG-512-256"]
    regressor = rg.BetaRegressor(32)
    assert (regressor.hidden.in_features, regressor.hidden.out_features, regressor.out.out_features) == (1024, 512, 1)
    out = regressor(torch.randn(7, 1024))
    assert out.shape == (7,) and torch.all(out >= 0)


def _trained_shallow(L):
    torch.manual_seed(0)
    return {role: rg.shallow_net(role, L) for role in ("CG1", "CG2", "UP1", "UP2")}


def test_table_one_wiring():
    L = 8
    shallow = _trained_shallow(L)
    m1, m2 = rg.build_model("model1", L), rg.build_model("model2", L, shallow)
    m3, m3h = rg.build_model("model3", L, shallow), rg.build_model("model3h", L, shallow)
    assert m1.trainable() == {"enc1": True, "enc2": True, "dec1": True, "dec2": True}
    assert m2.trainable() == {"enc1": False, "enc2": False, "dec1": True, "dec2": True}
    assert m3.trainable() == m3h.trainable() == {"enc1": False, "enc2": False, "dec1": False, "dec2": False}
    assert m2.sources == {"enc1": "HCG1", "enc2": "HCG2", "dec1": None, "dec2": None}
    assert m3.sources == {"enc1": "CG1", "enc2": "CG2", "dec1": "UP1", "dec2": "UP2"}
    # Transferred weights are copies of the shallow nets (not shared storage).
    for layer, role in m3.sources.items():
        got = rg.weight_matrix(getattr(m3, layer))
        assert torch.equal(got, rg.weight_matrix(shallow[role]))
        assert getattr(m3, layer).weight.data_ptr() != shallow[role].weight.data_ptr()
    # Model 2's encoder is exactly two decimations (Eq. 7, 8).
    x = random_spins(4, L, L, seed=3).float()
    torch.testing.assert_close(m2.encode(x.flatten(1)), x[:, ::2, ::2].flatten(1))
    torch.testing.assert_close(m3h.encode(x.flatten(1)), x[:, ::2, ::2].flatten(1))
    with pytest.raises(ValueError, match="CG1"):
        rg.build_model("model3", L, {})
    with pytest.raises(ValueError, match="kind"):
        rg.build_model("model4", L)
    with pytest.raises(ValueError, match="even"):
        rg.build_model("model1", 7)


def test_training_updates_only_trainable_layers_and_learns():
    L = 8
    x = random_spins(300, L, L, seed=4).float().flatten(1)
    model = rg.build_model("model2", L)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    history = rg.fit(model, x, x, rg.hinge_loss, rg.TrainConfig(epochs=2), progress=False)
    assert history["epochs_trained"] == 2 and len(history["val_loss"]) == 2
    assert history["n_train"] == 240 and history["n_val"] == 60
    for name, p in model.named_parameters():
        frozen = name.startswith("enc")
        assert torch.equal(p, before[name]) == frozen, name
    # CG-16-8 learns decimation of random lattices (a linear map exists with zero hinge loss).
    torch.manual_seed(0)
    x = random_spins(400, 4, 4, seed=8).float().flatten(1)
    net = rg.shallow_net("CG1", 4)
    d1 = rg.decimate(x.reshape(-1, 4, 4)).flatten(1)
    with torch.no_grad():
        initial = float(rg.hinge_loss(net(x), d1))
    history = rg.fit(net, x, d1, rg.hinge_loss, rg.TrainConfig(epochs=5, lr=1e-2, l1=0.0), progress=False)
    assert history["val_loss"][-1] < 0.2 * initial


def test_frozen_model_is_only_evaluated():
    L = 4
    x = random_spins(50, L, L, seed=5).float().flatten(1)
    model = rg.build_model("model3", L, _trained_shallow(L))
    history = rg.fit(model, x, x, rg.hinge_loss, rg.TrainConfig(epochs=3), progress=False)
    assert history["epochs_trained"] == 0
    _, val_idx = rg.training.split_indices(50, 0.2, 0)
    with torch.no_grad():
        assert history["val_loss"][0] == pytest.approx(float(rg.hinge_loss(model(x[val_idx]), x[val_idx])), rel=1e-6)


def test_checkpoint_resume_is_exact(tmp_path):
    L = 4
    x = random_spins(100, L, L, seed=6).float().flatten(1)
    config2 = rg.TrainConfig(epochs=2, l1=1e-3)
    torch.manual_seed(1)
    straight = rg.build_model("model1", L)
    state = {k: v.clone() for k, v in straight.state_dict().items()}
    h_straight = rg.fit(straight, x, x, rg.hinge_loss, config2, progress=False)
    resumed = rg.build_model("model1", L)
    resumed.load_state_dict(state)
    path = str(tmp_path / "ck.pt")
    rg.fit(resumed, x, x, rg.hinge_loss, rg.TrainConfig(epochs=1, l1=1e-3), checkpoint=path, progress=False)
    assert os.path.exists(path) and not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    fresh = rg.build_model("model1", L)  # weights come from the checkpoint
    h_resumed = rg.fit(fresh, x, x, rg.hinge_loss, config2, checkpoint=path, progress=False)
    assert h_resumed["train_loss"] == pytest.approx(h_straight["train_loss"], rel=1e-6)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)


def test_cosine_learning_rate_schedule_and_exact_resume(tmp_path):
    config = rg.TrainConfig(epochs=4, lr=1e-2, final_lr=1e-4, l1=0.0)
    lrs = [config.lr_at(e) for e in range(4)]
    assert lrs[0] == pytest.approx(1e-2) and all(a > b > 1e-4 for a, b in zip(lrs, lrs[1:]))
    assert config.lr_at(4) == pytest.approx(1e-4) and lrs[2] == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert rg.TrainConfig(lr=3e-3).lr_at(7) == 3e-3
    x = random_spins(60, 4, 4, seed=11).float().flatten(1)
    y = x[:, 0].abs() * 0.3
    torch.manual_seed(3)
    straight = rg.BetaRegressor(4)
    state = {k: v.clone() for k, v in straight.state_dict().items()}
    history = rg.fit(straight, x, y, rg.mse_loss, config, progress=False)
    assert history["lr"] == pytest.approx(lrs)
    resumed = rg.BetaRegressor(4)
    resumed.load_state_dict(state)
    path = str(tmp_path / "ck.pt")
    calls = []

    def crashing_loss(prediction, target):  # 5 training batches + 1 validation pass per epoch: dies in epoch 3
        calls.append(1)
        if len(calls) > 12:
            raise KeyboardInterrupt
        return rg.mse_loss(prediction, target)

    with pytest.raises(KeyboardInterrupt):
        rg.fit(resumed, x, y, crashing_loss, config, checkpoint=path, progress=False)
    assert torch.load(path, weights_only=False)["history"]["epochs_trained"] == 2
    fresh = rg.BetaRegressor(4)
    history = rg.fit(fresh, x, y, rg.mse_loss, config, checkpoint=path, progress=False)
    assert history["lr"] == pytest.approx(lrs)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    with pytest.raises(ValueError, match="final_lr"):
        rg.TrainConfig(lr=1e-3, final_lr=1e-2)
    with pytest.raises(ValueError, match="final_lr"):
        rg.TrainConfig(final_lr=0.0)


def test_l1_regularisation_shrinks_weights():
    L = 4
    x = random_spins(100, L, L, seed=7).float().flatten(1)
    norms = {}
    for l1 in (0.0, 0.5):
        torch.manual_seed(2)
        model = rg.build_model("model1", L)
        history = rg.fit(model, x, x, rg.hinge_loss, rg.TrainConfig(epochs=5, lr=1e-2, l1=l1), progress=False)
        norms[l1] = float(rg.l1_penalty(model).detach())
        assert history["l1_penalty"][-1] == pytest.approx(l1 * norms[l1], rel=1e-5)
    assert norms[0.5] < 0.5 * norms[0.0]


def test_losses_and_bad_input():
    pred, target = torch.tensor([0.5, -2.0, 1.5]), torch.tensor([1.0, 1.0, -1.0])
    assert float(rg.hinge_loss(pred, target)) == pytest.approx((0.5 + 3.0 + 2.5) / 3)
    assert float(rg.mse_loss(pred, target)) == pytest.approx((0.25 + 9 + 6.25) / 3)
    assert torch.equal(rg.to_spins(torch.tensor([0.3, 0.0, -1e-3])), torch.tensor([1.0, -1.0, -1.0]))
    model = rg.build_model("model1", 4)
    with pytest.raises(ValueError, match="rows"):
        rg.fit(model, torch.ones(10, 16), torch.ones(9, 16), rg.hinge_loss, rg.TrainConfig(), progress=False)
    with pytest.raises(ValueError, match="val_fraction"):
        rg.TrainConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        rg.TrainConfig(batch_size=0)


# ------------------------------------------------------------------------------------------- beta regressor
def test_regressor_starts_as_the_constant_mean_predictor():
    x = random_spins(500, 16, 16, seed=9).float().flatten(1)
    torch.manual_seed(0)
    regressor = rg.BetaRegressor(16, initial_beta=0.31)
    torch.testing.assert_close(regressor(x), torch.full((500,), 0.31))
    assert regressor.dead_fraction(x) == 0.0
    # Keras' default output layer (the old behaviour) puts about half the lattices on the ReLU's flat side.
    torch.manual_seed(0)
    assert 0.3 < rg.BetaRegressor(16, initial_beta=None).dead_fraction(x) < 0.7
    with pytest.raises(ValueError, match="initial_beta"):
        rg.BetaRegressor(16, initial_beta=0.0)


@pytest.fixture(scope="module")
def small_wide_range_set():
    """8x8 Monte Carlo lattices on 30 betas evenly spread over [0.01, 0.6], 60 each (the package's sampler)."""
    from physkernels.physics.ising import sample

    betas = np.linspace(0.01, 0.6, 30)
    x = torch.cat([sample(8, float(b), 60, seed=i) for i, b in enumerate(betas)]).flatten(1).float()
    return x, torch.tensor(np.repeat(betas, 60), dtype=torch.float32)


def test_regressor_learns_beta(small_wide_range_set):
    """The paper's recipe (Adam, batch 10, MSE, L1 1e-5) with the output layer started at the mean beta learns
    beta: validation MSE far below the variance of beta, predictions rising with beta, no dead ReLU. With Keras'
    default output initialisation the same run stalls above the variance (dead ReLU)."""
    x, beta = small_wide_range_set
    torch.manual_seed(0)
    regressor = rg.BetaRegressor(8, initial_beta=float(beta.mean()))
    history = rg.fit(regressor, x, beta, rg.mse_loss, rg.TrainConfig(epochs=12), progress=False)
    variance = float(beta.var())
    assert history["val_loss"][-1] < 0.4 * variance
    assert regressor.dead_fraction(x) < 0.05
    with torch.no_grad():
        means = regressor(x).reshape(30, 60).mean(1).numpy()
    assert np.corrcoef(means, np.linspace(0.01, 0.6, 30))[0, 1] > 0.95
    assert means[:10].mean() < means[10:20].mean() < means[20:].mean()


# -------------------------------------------------------------------------------------------------- crossings
def test_line_crossing_of_exact_lines():
    for slope, intercept in ((0.5, 0.2), (-0.3, 0.6), (2.0, -0.5)):
        beta = np.linspace(0.0, 0.6, 7)
        a, b, crossing = rg.line_crossing(beta, slope * beta + intercept)
        assert (a, b) == pytest.approx((slope, intercept), abs=1e-12)
        assert crossing == pytest.approx(intercept / (1 - slope))
    assert math.isnan(rg.line_crossing([0.0, 1.0], [1.0, 2.0])[2])  # parallel to the diagonal
    with pytest.raises(ValueError, match="same length"):
        rg.line_crossing([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="beta_prime"):
        rg.line_crossing([0.1, 0.2], [0.1, float("nan")])


def test_curve_crossing_finds_the_decimation_fixed_point():
    """The analytic flow of Eq. 5 crosses the diagonal at 0 and at its fixed point 0.50698."""
    beta = np.linspace(0.3, 0.7, 81)
    crossings = rg.curve_crossings(beta, rg.flow_beta(torch.tensor(beta)).numpy())
    assert len(crossings) == 1 and crossings[0] == pytest.approx(rg.flow_fixed_point(), abs=2e-5)
    # Near the fixed point a local straight-line fit gives the same answer.
    near = np.linspace(0.49, 0.52, 7)
    assert rg.line_crossing(near, rg.flow_beta(torch.tensor(near)).numpy())[2] == pytest.approx(
        rg.flow_fixed_point(), abs=1e-4)
    assert rg.curve_crossings([0.1, 0.2, 0.3], [0.0, 0.2, 0.1]) == [0.2]
    assert rg.curve_crossings([0.1, 0.2], [0.0, 0.1]) == []
    with pytest.raises(ValueError, match="increasing"):
        rg.curve_crossings([0.2, 0.1], [0.2, 0.1])


def test_bootstrap_crossing_covers_the_truth():
    """Noisy per-lattice predictions around the line 0.5 beta + 0.2 (crossing 0.4): the estimate is within a few
    bootstrap standard deviations of 0.4, and that standard deviation matches the spread over fresh data sets."""
    beta = np.linspace(0.025, 0.5, 20)
    rng = np.random.default_rng(3)

    def draw():
        return (0.5 * beta + 0.2)[:, None] + 0.05 * rng.standard_normal((20, 200))

    result = rg.bootstrap_crossing(beta, draw(), n_boot=400, seed=1)
    assert abs(result["crossing"] - 0.4) < 4 * result["std"]
    assert result["ci95"][0] < result["crossing"] < result["ci95"][1]
    spread = np.std([rg.line_crossing(beta, draw().mean(1))[2] for _ in range(200)])
    assert result["std"] == pytest.approx(spread, rel=0.3)
    with pytest.raises(ValueError, match="predictions"):
        rg.bootstrap_crossing(beta, np.ones((19, 5)))
    with pytest.raises(ValueError, match="n_boot"):
        rg.bootstrap_crossing(beta, np.ones((20, 5)), n_boot=1)


# ------------------------------------------------------------------------------------------------------ driver
@pytest.mark.slow
def test_quick_pipeline_end_to_end(tmp_path):
    """The whole study on 8x8 lattices: every figure and JSON is written and the numbers are sane."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "models.ising_rg", "--quick", "--no-progress", "--out", str(out),
                    "--results-dir", str(tmp_path / "bench")], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=300)
    table = (tmp_path / "bench" / "ising_rg.md").read_text()
    assert "commit" in table and "AE-WR line crossing" in table and "dead ReLU fraction" in table
    for name in ("fig09_losses", "fig10_reconstructions", "fig11_weights", "fig12_spin_correlation",
                 "fig13_entropy", "fig14_lattices", "fig15_regressor", "fig16_flow"):
        assert (out / f"{name}_quick.png").stat().st_size > 1000, name  # a quick run says so in its file names
    summary = json.loads((out / "summary.json").read_text())
    models = summary["models"]["models"]
    assert models["model3"]["epochs_trained"] == 0 and models["model1"]["epochs_trained"] == 1
    assert all(0 <= models[k]["val_loss"] < 2 for k in ("model1", "model2", "model3", "model3h"))
    assert models["weights"]["W1 hard-coded (Eq. 7)"]["cosine_to_hard_coded"] == pytest.approx(1.0, abs=1e-6)
    entropy = summary["entropy"]
    assert len(entropy["beta"]) == len(entropy["input"]) == 5
    assert all(0 <= v <= 1 for v in entropy["input"] + entropy["autoencoder"] + entropy["decimated"])
    assert entropy["input"][0] > entropy["input"][-1]  # hot lattices are more disordered
    flow = summary["flow"]
    assert flow["decimation_fixed_point"] == pytest.approx(rg.flow_fixed_point())
    assert len(flow["beta_prime_ae"]) == len(flow["beta_prime_decimated"]) == 5 and math.isfinite(flow["fit_slope"])
    assert len(flow["ae_crossing_per_seed"]) == 2 and flow["ae_crossing_error"] >= flow["ae_crossing_bootstrap_std"]
    regressor = summary["widerange"]["regressor"]
    assert len(regressor["val_mse"]) == 2 and summary["widerange"]["regressor_half"]["L"] == 4


def test_beta_from_correlation_inverts_the_exact_finite_lattice():
    """Correlation matching: brute-force enumeration of the 4x4 torus gives the correlation, the bisection on
    Kaufman's solution gives the beta back; ordered and antiferromagnetic lattices read +1 and -1."""
    from physkernels.physics.ising.exact import brute_force

    for beta in (0.2, 0.44, 0.7):
        correlation = -brute_force(4, beta)["energy"] / 2
        assert abs(rg.beta_from_correlation(correlation, 4) - beta) < 1e-5
    up = torch.ones(3, 6, 6)
    checkerboard = (-1.0) ** (torch.arange(6)[:, None] + torch.arange(6)[None, :]).float()
    assert torch.allclose(rg.nearest_neighbour_correlation(up), torch.ones(3, dtype=torch.float64))
    assert float(rg.nearest_neighbour_correlation(checkerboard)) == -1.0
    assert np.isnan(rg.beta_from_correlation(-0.1, 4))
    with pytest.raises(ValueError, match="square lattices"):
        rg.nearest_neighbour_correlation(torch.ones(4, 5))
