"""Decimation RG versus autoencoders on the 2D Ising model (Shukla & Thakur, arXiv:2108.06157), end to end.

Stages (each a subcommand; ``all`` runs them in order, later stages reuse what earlier ones saved in ``--out``):

* ``data``: Monte Carlo lattices (``physkernels.physics.ising.sample``): the ``beta = 0.4352`` set with its two
  successive decimations, the wide-range set (beta uniform in [0.01, 0.6), drawn on ``--wide-betas`` random
  temperatures) and a test grid of 20 beta in [0.025, 0.5] (entropy, regressor accuracy, flow).
* ``shallow``: trains CG-n-n/2, CG-n/2-n/4, UP-n/4-n/2, UP-n/2-n on (lattice, decimated lattice) pairs.
* ``models``: Models 1, 2, 3 (and the hard-coded Model 3-H) wired as in Table I; losses (Fig. 9 / A.1),
  reconstructions (Fig. 10), weight matrices and spin correlations W W^T (Fig. 11-12).
* ``widerange``: AE-WR (Model 1 on the wide-range set, Fig. A.2) and the beta regressors (Fig. 15): several seeds
  for ``L x L`` lattices and, trained on an ``L/2`` wide-range set, for decimated lattices.
* ``entropy``: local 3x3 Shannon entropy vs beta of input, AE-WR output and decimated lattice (Fig. 13-14).
* ``flow``: beta predicted for AE-WR outputs vs beta, its line-fit crossing with beta' = beta (paper: 0.4527) with
  a bootstrap + seed error, beta' measured on lattices decimated twice, next to the decimation flow
  beta' = 3/8 ln cosh 4 beta (fixed point 0.507; paper: 0.505) (Fig. 16). ``--results-dir`` writes stamped tables.
* ``rbm``: the Bernoulli RBM on L = 4 Ising data vs exact enumeration (see ``models/ising_rbm.py``).

``--quick`` runs everything on 8x8 lattices and a few hundred samples in well under a minute. The default is
32x32 with smaller data sets and far fewer epochs than the paper (4000): see docs/ising-rg.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from models.plots import save_figure  # noqa: E402
from physkernels.atomic import write_json  # noqa: E402
from physkernels.benchmarks.harness import ResultTable, write_results  # noqa: E402
from physkernels.physics import rg  # noqa: E402
from physkernels.physics.ising import sample  # noqa: E402

BETA_DATA = 0.4352
PAPER = {"loss_model1": 0.276, "loss_model2": 0.338, "loss_model3": 0.600, "val_loss_model1": 0.281,
         "val_loss_model2": 0.341, "val_loss_model3": 0.601, "ae_crossing": 0.45265, "decimation_fixed_point": 0.505}


@dataclasses.dataclass
class Settings:
    L: int = 32
    n_critical: int = 10000
    n_wide: int = 50000
    wide_betas: int = 500
    grid_betas: int = 20
    grid_lattices: int = 1000
    epochs: int = 20
    regressor_epochs: int = 25
    lr: float = 1e-3
    l1: float = 1e-5
    regressor_lr: float = 1e-3
    regressor_final_lr: float = 1e-5
    regressor_l1: float = 1e-5
    regressor_batch: int = 10
    regressor_seeds: int = 3
    bootstrap: int = 1000
    seed: int = 0
    quick: bool = False  # figures labelled as a quick run (set by --quick, not an option of its own)


SETTING_HELP = {
    "L": "lattice side of the data and the models", "n_critical": "lattices sampled at beta_c (Fig. 9-14)",
    "n_wide": "lattices over the wide beta range (regressor and AE-WR training)",
    "wide_betas": "inverse temperatures of the wide range", "grid_betas": "betas of the flow grid (Fig. 16)",
    "grid_lattices": "lattices per flow-grid beta", "epochs": "autoencoder training epochs",
    "regressor_epochs": "beta-regressor training epochs", "lr": "autoencoder learning rate",
    "l1": "autoencoder L1 weight penalty", "regressor_lr": "beta-regressor initial learning rate",
    "regressor_final_lr": "beta-regressor final learning rate (cosine decay)",
    "regressor_l1": "beta-regressor L1 weight penalty", "regressor_batch": "beta-regressor batch size",
    "regressor_seeds": "independently trained regressors (the crossing's spread)",
    "bootstrap": "bootstrap resamples of the error bars", "seed": "random seed of sampling and training"}

QUICK = Settings(L=8, n_critical=200, n_wide=400, wide_betas=20, grid_betas=5, grid_lattices=20, epochs=1,
                 regressor_epochs=15, regressor_seeds=2, bootstrap=50, quick=True)


# ----------------------------------------------------------------------------------------------------- helpers
def _path(out: str, *parts: str) -> str:
    path = os.path.join(out, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _save_figure(fig, path: str, quick: bool) -> None:
    save_figure(fig, path, quick, dpi=110)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).float()


def _config(s: Settings, epochs: int) -> rg.TrainConfig:
    return rg.TrainConfig(epochs=epochs, lr=s.lr, l1=s.l1, seed=s.seed)


def _cached(path: str, make):
    """Load ``path`` if it exists, else build it with ``make()`` and save it atomically."""
    if os.path.exists(path):
        return torch.load(path, weights_only=False)
    value = make()
    rg.save_atomic(value, path)
    return value


# -------------------------------------------------------------------------------------------------------- data
def grid_betas(s: Settings) -> np.ndarray:
    return np.linspace(0.025, 0.5, s.grid_betas)


def critical_set(s: Settings, out: str, progress: bool) -> dict:
    """``n_critical`` lattices at ``beta = 0.4352`` and their two successive decimations."""
    def make():
        x = sample(s.L, BETA_DATA, s.n_critical, seed=s.seed, progress=progress)
        d1 = rg.decimate(x)
        return {"x": x, "d1": d1, "d2": rg.decimate(d1), "beta": BETA_DATA}

    return _cached(_path(out, "data", "critical.pt"), make)


def wide_set(s: Settings, out: str, progress: bool, L: int | None = None) -> dict:
    """``n_wide`` ``L x L`` lattices (default ``L = s.L``) with beta uniform in [0.01, 0.6): ``wide_betas``
    temperatures drawn at random, one Monte Carlo run each. The ``L/2`` set trains the regressor that measures
    the beta of decimated lattices."""
    L = s.L if L is None else L
    seed_offset = 1 if L == s.L else 200_000

    def make():
        rng = np.random.default_rng(s.seed)
        betas = np.sort(rng.uniform(0.01, 0.6, s.wide_betas))
        counts = np.full(s.wide_betas, s.n_wide // s.wide_betas)
        counts[: s.n_wide % s.wide_betas] += 1
        xs, bs = [], []
        for i, (beta, n) in enumerate(tqdm(list(zip(betas, counts)), desc=f"wide-range set {L}x{L}",
                                           disable=not progress)):
            xs.append(sample(L, float(beta), int(n), seed=s.seed + seed_offset + i))
            bs.append(torch.full((int(n),), float(beta)))
        return {"x": torch.cat(xs), "beta": torch.cat(bs)}

    return _cached(_path(out, "data", "wide.pt" if L == s.L else f"wide_L{L}.pt"), make)


def grid_set(s: Settings, out: str, progress: bool) -> dict:
    """The test grid: ``grid_lattices`` fresh lattices at each of ``grid_betas`` betas in [0.025, 0.5]."""
    def make():
        betas = grid_betas(s)
        xs = [sample(s.L, float(b), s.grid_lattices, seed=s.seed + 100_000 + i)
              for i, b in enumerate(tqdm(betas, desc="test grid", disable=not progress))]
        return {"x": torch.stack(xs), "beta": torch.tensor(betas)}

    return _cached(_path(out, "data", "grid.pt"), make)


def stage_data(s: Settings, out: str, progress: bool) -> dict:
    return {"critical": critical_set(s, out, progress), "wide": wide_set(s, out, progress),
            "wide_half": wide_set(s, out, progress, s.L // 2), "grid": grid_set(s, out, progress)}


# ---------------------------------------------------------------------------------------------- shallow nets
def shallow_pairs(critical: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    x, d1, d2 = _flat(critical["x"]), _flat(critical["d1"]), _flat(critical["d2"])
    return {"CG1": (x, d1), "CG2": (d1, d2), "UP1": (d2, d1), "UP2": (d1, x)}


def stage_shallow(s: Settings, out: str, progress: bool) -> dict:
    critical = critical_set(s, out, progress)
    nets, results = {}, {}
    for role, (inputs, targets) in shallow_pairs(critical).items():
        torch.manual_seed(s.seed)
        net = rg.shallow_net(role, s.L)
        history = rg.fit(net, inputs, targets, rg.hinge_loss, _config(s, s.epochs),
                         checkpoint=_path(out, "checkpoints", f"{role}.pt"), desc=rg.shallow_name(role, s.L),
                         progress=progress)
        nets[role] = net
        results[rg.shallow_name(role, s.L)] = {"train_loss": history["train_loss"][-1],
                                               "val_loss": history["val_loss"][-1], "history": history}
    for role in ("HCG1", "HCG2"):  # the hard-coded nets on the same task as CG1/CG2, for comparison
        inputs, targets = shallow_pairs(critical)["CG" + role[-1]]
        with torch.no_grad():
            results[rg.shallow_name(role, s.L)] = {"loss": float(rg.hinge_loss(rg.shallow_net(role, s.L)(inputs),
                                                                               targets))}
    write_json(_path(out, "shallow.json"), results)
    return nets


# ------------------------------------------------------------------------------------------------ Models 1-3
def stage_models(s: Settings, out: str, progress: bool) -> dict:
    critical = critical_set(s, out, progress)
    shallow = stage_shallow(s, out, progress)
    x = _flat(critical["x"])
    models, histories = {}, {}
    for kind in rg.TABLE_I:
        torch.manual_seed(s.seed)
        model = rg.build_model(kind, s.L, shallow)
        histories[kind] = rg.fit(model, x, x, rg.hinge_loss, _config(s, s.epochs),
                                 checkpoint=_path(out, "checkpoints", f"{kind}.pt"), desc=kind, progress=progress)
        models[kind] = model
    summary = {kind: {"train_loss": h["train_loss"][-1], "val_loss": h["val_loss"][-1],
                      "epochs_trained": h["epochs_trained"], "layers": models[kind].sources,
                      "trainable": models[kind].trainable()} for kind, h in histories.items()}
    summary["weights"] = _weight_analysis(models["model1"], shallow, s.L, out, s.quick)
    _plot_losses(histories, _path(out, "fig09_losses.png"), s.quick)
    _plot_reconstructions(models, critical["x"][: 3], s.L, _path(out, "fig10_reconstructions.png"), s.quick)
    write_json(_path(out, "models.json"), {"settings": dataclasses.asdict(s), "paper": PAPER, "models": summary,
                                            "histories": histories})
    return models


def _plot_losses(histories: dict, path: str, quick: bool) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, h in histories.items():
        if h["epochs_trained"]:
            epochs = np.arange(1, len(h["train_loss"]) + 1)
            line, = ax.plot(epochs, h["train_loss"], label=f"{kind} train")
            ax.plot(epochs, h["val_loss"], "--", color=line.get_color(), label=f"{kind} validation")
        else:
            ax.axhline(h["val_loss"][-1], ls=":", color="k" if kind == "model3" else "gray",
                       label=f"{kind} (transferred, not trained)")
    ax.set(xlabel="epoch", ylabel="hinge loss", title="Losses of Models 1-3 (paper: 0.276, 0.338, 0.600)")
    ax.legend(fontsize=7)
    _save_figure(fig, path, quick)


def _plot_reconstructions(models: dict, lattices: torch.Tensor, L: int, path: str, quick: bool) -> None:
    kinds = list(models)
    fig, axes = plt.subplots(len(lattices), 1 + len(kinds), figsize=(2.2 * (1 + len(kinds)), 2.2 * len(lattices)),
                             squeeze=False)
    with torch.no_grad():
        outputs = {k: m(_flat(lattices)).reshape(-1, L, L) for k, m in models.items()}
    for r in range(len(lattices)):
        axes[r, 0].imshow(lattices[r].numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[r, 0].set_title("input" if r == 0 else "")
        for c, k in enumerate(kinds, start=1):
            axes[r, c].imshow(rg.to_spins(outputs[k][r]).numpy(), cmap="gray", vmin=-1, vmax=1)
            axes[r, c].set_title(k if r == 0 else "")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("Fig. 10: reconstructions (sign of the output)")
    _save_figure(fig, path, quick)


def _band_weight(corr: torch.Tensor, offsets: tuple[int, ...]) -> float:
    """Fraction of sum |C_ij| on the diagonals ``j - i`` in ``offsets``."""
    n = corr.shape[0]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mask = torch.zeros_like(corr, dtype=torch.bool)
    for d in offsets:
        mask |= (j - i) == d
    return float(corr.abs()[mask].sum() / corr.abs().sum())


def _weight_analysis(ae, shallow: dict, L: int, out: str, quick: bool) -> dict:
    """Fig. 11-12: W1, W2 of the RG-trained nets (CG1, CG2), of the hard-coded nets and of the AE; W W^T."""
    mats = {
        "W1 hard-coded (Eq. 7)": rg.weight_matrix(rg.shallow_net("HCG1", L)),
        "W1 trained on RG (CG1)": rg.weight_matrix(shallow["CG1"]),
        "W1 trained as AE (Model 1)": rg.weight_matrix(ae.enc1),
        "W2 hard-coded (Eq. 8)": rg.weight_matrix(rg.shallow_net("HCG2", L)),
        "W2 trained on RG (CG2)": rg.weight_matrix(shallow["CG2"]),
        "W2 trained as AE (Model 1)": rg.weight_matrix(ae.enc2),
    }
    fig, axes = plt.subplots(2, 3, figsize=(12, 9))
    fig2, axes2 = plt.subplots(2, 3, figsize=(12, 8))
    stats = {}
    for ax, ax2, (name, w) in zip(axes.flat, axes2.flat, mats.items()):
        ax.imshow(w.numpy(), cmap="RdBu_r", aspect="auto", vmin=-w.abs().max(), vmax=w.abs().max())
        ax.set_title(name, fontsize=9)
        corr = w @ w.t()
        ax2.imshow(corr.numpy(), cmap="viridis")
        symbol, how = name.split(" ", 1)
        ax2.set_title(f"{symbol} {symbol}^T {how}", fontsize=9)
        row = L if name.startswith("W1") else L // 2
        hard = mats[f"{name[:2]} hard-coded (Eq. {7 if name.startswith('W1') else 8})"]
        stats[name] = {
            "cosine_to_hard_coded": float((w * hard).sum() / (w.norm() * hard.norm())),
            "fraction_of_|WW^T|_on_diagonal": _band_weight(corr, (0,)),
            "fraction_of_|WW^T|_at_offsets_0_+-1_+-row": _band_weight(corr, (0, 1, -1, row, -row)),
        }
    fig.suptitle("Fig. 11: weight matrices W (rows: input units, columns: output units)")
    fig2.suptitle("Fig. 12: spin-correlation matrices W W^T")
    _save_figure(fig, _path(out, "fig11_weights.png"), quick)
    _save_figure(fig2, _path(out, "fig12_spin_correlation.png"), quick)
    return stats


# ------------------------------------------------------------------------------------------ AE-WR, regressor
def regressor_config(s: Settings, seed: int) -> rg.TrainConfig:
    """Adam at ``regressor_lr``, cosine-decayed to ``regressor_final_lr`` (equal values: constant)."""
    return rg.TrainConfig(epochs=s.regressor_epochs, batch_size=s.regressor_batch, lr=s.regressor_lr,
                          final_lr=s.regressor_final_lr, l1=s.regressor_l1, seed=seed)


def train_regressors(s: Settings, out: str, progress: bool, L: int) -> tuple[list[rg.BetaRegressor], list[dict]]:
    """``regressor_seeds`` beta regressors for ``L x L`` lattices, trained on the ``L x L`` wide-range set
    (seeds ``s.seed + k`` for the initialisation, the validation split and the shuffling)."""
    wide = wide_set(s, out, progress, L)
    x, beta = _flat(wide["x"]), wide["beta"].float()
    regressors, histories = [], []
    for k in range(s.regressor_seeds):
        torch.manual_seed(s.seed + k)
        model = rg.BetaRegressor(L, initial_beta=float(beta.mean()))
        history = rg.fit(model, x, beta, rg.mse_loss, regressor_config(s, s.seed + k),
                         checkpoint=_path(out, "checkpoints", f"regressor_L{L}_seed{k}.pt"),
                         desc=f"beta regressor {L}x{L} #{k}", progress=progress)
        history["dead_relu_fraction"] = model.dead_fraction(x)
        regressors.append(model)
        histories.append(history)
    return regressors, histories


def predict_beta(regressors: list[rg.BetaRegressor], lattices: torch.Tensor) -> np.ndarray:
    """Beta predicted by every regressor for every lattice: ``(n_regressors, N)`` for lattices ``(N, L, L)``."""
    with torch.no_grad():
        x = _flat(lattices)
        return torch.stack([model(x) for model in regressors]).numpy()


def stage_widerange(s: Settings, out: str, progress: bool) -> tuple[torch.nn.Module, list, list]:
    """AE-WR and the beta regressors (for ``L`` and for the ``L/2`` decimated lattices); Fig. 15."""
    x = _flat(wide_set(s, out, progress)["x"])
    grid = grid_set(s, out, progress)
    torch.manual_seed(s.seed)
    ae = rg.build_model("model1", s.L)
    ae_history = rg.fit(ae, x, x, rg.hinge_loss, _config(s, s.epochs), checkpoint=_path(out, "checkpoints",
                        "ae_wr.pt"), desc="AE-WR", progress=progress)
    regressors, histories = train_regressors(s, out, progress, s.L)
    half_regressors, half_histories = train_regressors(s, out, progress, s.L // 2)
    n_beta, n_lattices = grid["x"].shape[:2]
    predicted = predict_beta(regressors, grid["x"].flatten(0, 1)).reshape(len(regressors), n_beta, n_lattices)
    betas = grid["beta"].numpy()
    error = predicted - betas[None, :, None]
    ensemble = predicted.mean(0)
    test = {"test_mse": [float(v) for v in (error ** 2).mean((1, 2))],
            "ensemble_test_mse": float(((ensemble - betas[:, None]) ** 2).mean()),
            "ensemble_test_mse_by_beta": ((ensemble - betas[:, None]) ** 2).mean(1).tolist(),
            "ensemble_mean_by_beta": ensemble.mean(1).tolist(), "ensemble_std_by_beta": ensemble.std(1).tolist()}
    _plot_regressor(betas, ensemble, histories, half_histories, test["ensemble_test_mse"],
                    _path(out, "fig15_regressor.png"), s.quick)

    def summary(hs: list[dict]) -> dict:
        return {"train_mse": [h["train_loss"][-1] for h in hs], "val_mse": [h["val_loss"][-1] for h in hs],
                "dead_relu_fraction": [h["dead_relu_fraction"] for h in hs], "epochs": hs[0]["epochs_trained"],
                "histories": hs}

    write_json(_path(out, "widerange.json"), {
        "settings": dataclasses.asdict(s),
        "ae_wr": {"train_loss": ae_history["train_loss"][-1], "val_loss": ae_history["val_loss"][-1],
                  "paper": {"train_loss": 0.347, "val_loss": 0.357}, "history": ae_history},
        "regressor": {**summary(histories), **test, "paper_train_mse": 0.0035,
                      "beta_variance": float(wide_set(s, out, progress)["beta"].var())},
        "regressor_half": {"L": s.L // 2, **summary(half_histories)}})
    return ae, regressors, half_regressors


def _plot_regressor(betas: np.ndarray, ensemble: np.ndarray, histories: list[dict], half_histories: list[dict],
                    test_mse: float, path: str, quick: bool) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.errorbar(betas, ensemble.mean(1), yerr=ensemble.std(1), fmt="o", ms=3, capsize=2,
                  label="test lattices: mean +- std over lattices")
    left.plot([0, 0.6], [0, 0.6], "k-", lw=0.8, label="predicted = actual")
    left.set(xlabel="actual beta", ylabel="predicted beta",
             title=f"Fig. 15: beta regressor, {len(histories)}-seed mean (test MSE {test_mse:.4f})")
    left.legend(fontsize=8)
    for k, (h, hh) in enumerate(zip(histories, half_histories)):
        epochs = np.arange(1, len(h["val_loss"]) + 1)
        right.plot(epochs, h["train_loss"], color=f"C{k}", lw=0.8, label=f"seed {k} train")
        right.plot(epochs, h["val_loss"], color=f"C{k}", ls="--", label=f"seed {k} validation")
        right.plot(np.arange(1, len(hh["val_loss"]) + 1), hh["val_loss"], color=f"C{k}", ls=":", lw=0.8,
                   label=f"seed {k} validation, L/2 regressor")
    right.axhline(0.0035, color="k", lw=0.8, label="paper (train) 0.0035")
    right.set(xlabel="epoch", ylabel="MSE", yscale="log", title="regressor training")
    right.legend(fontsize=7)
    _save_figure(fig, path, quick)


# ------------------------------------------------------------------------------------------------- entropy
def stage_entropy(s: Settings, out: str, progress: bool) -> dict:
    ae, _, _ = stage_widerange(s, out, progress)
    grid = grid_set(s, out, progress)
    curves = {"input": [], "autoencoder": [], "decimated": []}
    with torch.no_grad():
        for x in grid["x"]:
            output = ae(_flat(x)).reshape(x.shape)
            curves["input"].append(float(rg.lattice_entropy(x).mean()))
            curves["autoencoder"].append(float(rg.lattice_entropy(output).mean()))
            curves["decimated"].append(float(rg.lattice_entropy(rg.decimate(rg.decimate(x))).mean()))
    betas = grid["beta"].tolist()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(betas, values, "o-", ms=3, label=name)
    ax.set(xlabel="beta", ylabel="mean local entropy per spin (bits, 3x3)", title="Fig. 13: local Shannon entropy")
    ax.legend()
    _save_figure(fig, _path(out, "fig13_entropy.png"), s.quick)
    picks = [0, len(betas) // 2, len(betas) - 1]
    fig, axes = plt.subplots(3, 3, figsize=(7, 7))
    with torch.no_grad():
        for c, i in enumerate(picks):
            x = grid["x"][i, 0]
            rows = [x, rg.to_spins(ae(_flat(x[None])).reshape(x.shape)), rg.decimate(rg.decimate(x))]
            for r, lattice in enumerate(rows):
                axes[r, c].imshow(lattice.numpy(), cmap="gray", vmin=-1, vmax=1)
                axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            axes[0, c].set_title(f"beta = {betas[i]:.3f}")
    for r, name in enumerate(("input", "AE-WR output", "decimated twice")):
        axes[r, 0].set_ylabel(name)
    _save_figure(fig, _path(out, "fig14_lattices.png"), s.quick)
    result = {"beta": betas, **curves}
    write_json(_path(out, "entropy.json"), result)
    return result


# ---------------------------------------------------------------------------------------------------- flow
def stage_flow(s: Settings, out: str, progress: bool) -> dict:
    """Fig. 16: beta' measured by the regressors on AE-WR outputs and on lattices decimated twice.

    The AE crossing with ``beta' = beta`` is the paper's straight-line fit through the per-beta mean of the
    seed-averaged predictions. Its error combines (in quadrature) a bootstrap over the test lattices and the
    spread of the crossings obtained with each regressor seed alone (AE-WR itself is trained once).
    """
    ae, regressors, half_regressors = stage_widerange(s, out, progress)
    grid = grid_set(s, out, progress)
    betas = grid["beta"].numpy()
    shape = (len(regressors), *grid["x"].shape[:2])
    lattices = grid["x"].flatten(0, 1)
    with torch.no_grad():
        raw_outputs = ae(_flat(lattices)).reshape(lattices.shape)
    ae_outputs = rg.to_spins(raw_outputs)
    on_input = predict_beta(regressors, lattices).reshape(shape)
    on_ae = predict_beta(regressors, ae_outputs).reshape(shape)
    on_raw = predict_beta(regressors, raw_outputs).reshape(shape)
    decimated = rg.decimate(rg.decimate(lattices))
    on_decimated = predict_beta(half_regressors, decimated).reshape(shape)
    boot = rg.bootstrap_crossing(betas, on_ae.mean(0), n_boot=s.bootstrap, seed=s.seed)
    per_seed = [rg.line_crossing(betas, on_ae[k].mean(1))[2] for k in range(len(regressors))]
    seed_std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    crossing_error = float(np.hypot(boot["std"], seed_std))
    calibrated = [calibrate(betas, on_input[k].mean(1), on_ae[k].mean(1)) for k in range(len(regressors))]
    calibrated_crossings = [rg.line_crossing(betas, c)[2] if np.all(np.isfinite(c)) else float("nan")
                            for c in calibrated]
    correlations = rg.nearest_neighbour_correlation(decimated).reshape(shape[1:]).mean(1)
    matched = [rg.beta_from_correlation(float(c), decimated.shape[-1]) for c in correlations]
    decimated_curve = on_decimated.mean((0, 2))
    two_steps = rg.flow_beta(rg.flow_beta(torch.tensor(betas, dtype=torch.float64))).numpy()
    fixed_point = rg.flow_fixed_point()
    result = {"beta": betas.tolist(), "beta_prime_ae": on_ae.mean((0, 2)).tolist(),
              "beta_prime_ae_std_over_lattices": on_ae.mean(0).std(1).tolist(),
              "beta_regressor_on_input": on_input.mean((0, 2)).tolist(),
              "fit_slope": boot["slope"], "fit_intercept": boot["intercept"], "ae_crossing": boot["crossing"],
              "ae_crossing_error": crossing_error, "ae_crossing_bootstrap_std": boot["std"],
              "ae_crossing_bootstrap_ci95": boot["ci95"], "ae_crossing_per_seed": per_seed,
              "ae_crossing_seed_std": seed_std, "paper_ae_crossing": PAPER["ae_crossing"],
              "beta_prime_ae_calibrated": np.mean(calibrated, 0).tolist(),
              "ae_crossing_calibrated": float(np.mean(calibrated_crossings)),
              "ae_crossing_calibrated_seed_std": float(np.std(calibrated_crossings, ddof=1))
              if len(calibrated_crossings) > 1 else 0.0,
              "beta_prime_decimated": decimated_curve.tolist(),
              "beta_prime_decimated_crossings": rg.curve_crossings(betas, decimated_curve),
              "beta_prime_two_decimation_steps_eq5": two_steps.tolist(),
              "decimation_fixed_point": fixed_point, "paper_decimation_fixed_point": PAPER["decimation_fixed_point"],
              "beta_c": rg.BETA_C, "fit_range": [float(betas.min()), float(betas.max())],
              "readouts": {"spins": readout_summary(betas, on_ae, s), "raw": readout_summary(betas, on_raw, s)},
              "decimated_nn_correlation": correlations.tolist(), "beta_prime_decimated_matched": matched,
              "beta_prime_decimated_matched_crossings": rg.curve_crossings(betas, np.array(matched))
              if np.all(np.isfinite(matched)) else []}
    _plot_flow(result, on_ae.mean(0).std(1), _path(out, "fig16_flow.png"), s.quick)
    _plot_readouts(result, _path(out, "fig16b_readouts.png"), s.quick)
    write_json(_path(out, "flow.json"), result)
    return result


def readout_summary(betas: np.ndarray, readings: np.ndarray, s: Settings) -> dict:
    """beta' of one readout of the AE-WR outputs (``readings``: regressor seed x beta x lattice): per-beta mean,
    the line-fit crossing with beta' = beta and its error (bootstrap over lattices and spread over regressor
    seeds, in quadrature), the fit range, and the fit-free reading: the sign of beta' - beta at each beta and
    where the points themselves cross the diagonal inside the grid."""
    boot = rg.bootstrap_crossing(betas, readings.mean(0), n_boot=s.bootstrap, seed=s.seed)
    per_seed = [rg.line_crossing(betas, readings[k].mean(1))[2] for k in range(len(readings))]
    seed_std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    mean = readings.mean((0, 2))
    return {"beta_prime": mean.tolist(), "crossing": boot["crossing"],
            "crossing_error": float(np.hypot(boot["std"], seed_std)), "crossing_per_seed": per_seed,
            "fit_range": [float(betas.min()), float(betas.max())],
            "above_diagonal": [bool(v) for v in mean > betas],
            "point_crossings": rg.curve_crossings(betas, mean)}


def _plot_readouts(r: dict, path: str, quick: bool) -> None:
    """beta' of the AE-WR outputs read raw and as spins, and of decimated lattices by correlation matching."""
    betas = np.array(r["beta"])
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for key, colour, label in (("spins", "tab:blue", "AE-WR outputs as +-1 spins"),
                               ("raw", "tab:orange", "AE-WR outputs raw (real values)")):
        ro = r["readouts"][key]
        ax.plot(betas, ro["beta_prime"], "o", ms=4, color=colour,
                label=f"{label}: line fit {_crossing(ro['crossing'], ro['crossing_error'])}")
    ax.plot(betas, r["beta_prime_decimated_matched"], "s", ms=4, mfc="none", color="tab:red",
            label="decimated twice, beta' from the exact nearest-neighbour correlation (no regressor)")
    ax.plot(betas, r["beta_prime_decimated"], "d", ms=4, mfc="none", color="tab:gray",
            label="decimated twice, L/2 regressor")
    ax.plot(betas, betas, "k-", lw=0.8, label="beta' = beta")
    ax.axvline(r["beta_c"], color="gray", ls=":", label=f"beta_c = {r['beta_c']:.4f}")
    ax.set(xlabel="beta", ylabel="beta'", title="beta' by readout: fit range "
           f"{r['fit_range'][0]:.3f}-{r['fit_range'][1]:.3f}")
    ax.legend(fontsize=6.5, loc="upper left")
    _save_figure(fig, path, quick)


def calibrate(betas: np.ndarray, on_input: np.ndarray, readings: np.ndarray) -> np.ndarray:
    """Undo the regressor's own bias: map each reading through the inverse of its calibration curve
    ``beta -> mean reading of equilibrium lattices at beta`` (``on_input``), interpolated linearly. Readings are
    clipped to the calibrated range; ``nan`` everywhere when the curve is not increasing (no inverse)."""
    if np.any(np.diff(on_input) <= 0):
        return np.full_like(readings, np.nan)
    return np.interp(readings, on_input, betas)


def _crossing(value: float, error: float) -> str:
    """Legend text for a line's crossing with beta' = beta; a fit that never crosses (parallel line, too few
    points) says so instead of printing nan."""
    if not np.isfinite(value):
        return "does not cross beta' = beta"
    return f"crosses at {value:.4f} +- {error:.4f}" if np.isfinite(error) else f"crosses at {value:.4f}"


def _plot_flow(r: dict, spread: np.ndarray, path: str, quick: bool) -> None:
    betas = np.array(r["beta"])
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.errorbar(betas, r["beta_prime_ae"], yerr=spread, fmt="o", ms=4, capsize=2, color="tab:blue",
                label="beta' of AE-WR outputs (regressor; bars: std over lattices)")
    ax.plot(betas, r["fit_slope"] * betas + r["fit_intercept"], "-", color="tab:blue", lw=1,
            label=f"line fit: {_crossing(r['ae_crossing'], r['ae_crossing_error'])} (paper 0.4527)")
    ax.plot(betas, r["beta_regressor_on_input"], "x", ms=4, color="tab:green", label="regressor on the inputs")
    ax.plot(betas, r["beta_prime_ae_calibrated"], "^", ms=4, mfc="none", color="tab:purple",
            label=f"AE-WR outputs, calibrated by the inputs' readings (line "
                  f"{_crossing(r['ae_crossing_calibrated'], r['ae_crossing_calibrated_seed_std'])})")
    ax.plot(betas, r["beta_prime_decimated"], "s", ms=4, mfc="none", color="tab:red",
            label="beta' of lattices decimated twice (L/2 regressor)")
    fine = np.linspace(0, max(0.6, r["decimation_fixed_point"] + 0.05), 200)
    once = rg.flow_beta(torch.tensor(fine, dtype=torch.float64))
    ax.plot(fine, once.numpy(), "r-", label=f"decimation, Eq. 5: 3/8 ln cosh 4beta (fixed point "
                                            f"{r['decimation_fixed_point']:.4f})")
    ax.plot(fine, rg.flow_beta(once).numpy(), "r--", lw=0.8, label="Eq. 5 applied twice")
    ax.plot(fine, fine, "k-", lw=0.8, label="beta' = beta")
    ax.axvline(r["beta_c"], color="gray", ls=":", label=f"beta_c = {r['beta_c']:.4f}")
    ax.set(xlabel="beta", ylabel="beta'", xlim=(0, fine[-1]), ylim=(0, 0.85),
           title="Fig. 16: flow of the AE-WR vs decimation")
    ax.legend(fontsize=6.5, loc="upper left")
    _save_figure(fig, path, quick)


# ------------------------------------------------------------------------------------------------------ CLI
STAGES = {"data": stage_data, "shallow": stage_shallow, "models": stage_models, "widerange": stage_widerange,
          "entropy": stage_entropy, "flow": stage_flow}


def run_all(s: Settings, out: str, progress: bool) -> dict:
    start = time.perf_counter()
    for name in ("data", "shallow", "models", "widerange", "entropy", "flow"):
        STAGES[name](s, out, progress)
    summary = {"settings": dataclasses.asdict(s), "seconds": time.perf_counter() - start}
    for name in ("shallow", "models", "widerange", "entropy", "flow"):
        with open(os.path.join(out, f"{name}.json")) as f:
            summary[name] = json.load(f)
    for key in ("models", "widerange", "shallow"):  # keep the summary short: drop per-epoch histories
        summary[key].pop("histories", None)
    summary["widerange"]["ae_wr"].pop("history", None)
    for key in ("regressor", "regressor_half"):
        summary["widerange"][key].pop("histories", None)
    write_json(_path(out, "summary.json"), summary)
    return summary


def write_bench_results(out: str, results_dir: str, stem: str, timing: dict) -> tuple[str, str]:
    """Stamped tables (machine, date, commit) of the regressor (Fig. 15) and flow (Fig. 16) results found in
    ``out``, written as ``<results_dir>/<stem>.json|md``."""
    with open(os.path.join(out, "widerange.json")) as f:
        wide = json.load(f)
    with open(os.path.join(out, "flow.json")) as f:
        flow = json.load(f)
    s = wide["settings"]
    regressor = ResultTable("regressor", "Beta regressor (Fig. 15): n-n/2 (tanh)-1 (ReLU), MSE",
                            ["lattice", "seed", "epochs", "train MSE", "val MSE", "test MSE (grid)",
                             "dead ReLU fraction"])
    for key in ("regressor", "regressor_half"):
        r, L = wide[key], s["L"] if key == "regressor" else s["L"] // 2
        for k in range(len(r["val_mse"])):
            regressor.add(**{"lattice": f"{L}x{L}", "seed": k, "epochs": r["epochs"], "train MSE": r["train_mse"][k],
                             "val MSE": r["val_mse"][k], "dead ReLU fraction": r["dead_relu_fraction"][k],
                             "test MSE (grid)": r["test_mse"][k] if key == "regressor" else None})
    regressor.add(**{"lattice": f"{s['L']}x{s['L']}", "seed": "mean of seeds",
                     "test MSE (grid)": wide["regressor"]["ensemble_test_mse"]})
    regressor.add(**{"lattice": "32x32 (paper)", "epochs": "until MSE 0.0035", "train MSE": 0.0035})
    schedule = (f"cosine-decayed to {s['regressor_final_lr']}" if s["regressor_final_lr"] != s["regressor_lr"]
                else "constant")
    regressor.notes += [
        f"wide-range set: {s['n_wide']} lattices on {s['wide_betas']} betas ~ U[0.01, 0.6), 20% validation; "
        f"test grid: {s['grid_betas']} betas in [0.025, 0.5] x {s['grid_lattices']} fresh lattices",
        f"Adam lr {s['regressor_lr']} ({schedule}), batch {s['regressor_batch']}, L1 {s['regressor_l1']}, output layer "
        f"initialised to the constant mean beta; variance of beta in the set {wide['regressor']['beta_variance']:.4f}",
        "the L/2 regressor is trained the same way on an L/2 wide-range set; it measures decimated lattices"]
    crossing = ResultTable("flow", "RG flow (Fig. 16): fixed points beta' = beta", ["quantity", "here", "paper"])
    crossing.add(quantity="AE-WR line crossing", here=f"{flow['ae_crossing']:.4f} +- {flow['ae_crossing_error']:.4f}",
                 paper=str(flow["paper_ae_crossing"]))
    crossing.add(quantity="  bootstrap std over test lattices / std over regressor seeds",
                 here=f"{flow['ae_crossing_bootstrap_std']:.4f} / {flow['ae_crossing_seed_std']:.4f}")
    crossing.add(quantity="  crossing per regressor seed",
                 here=", ".join(f"{c:.4f}" for c in flow["ae_crossing_per_seed"]))
    crossing.add(quantity="  line fit slope / intercept", here=f"{flow['fit_slope']:.3f} / {flow['fit_intercept']:.3f}")
    measured = rg.curve_crossings(flow["beta"], flow["beta_prime_ae"])
    crossing.add(quantity="AE-WR points themselves (no fit): crossings inside the grid",
                 here=", ".join(f"{c:.4f}" for c in measured) or "none: beta' > beta at every grid beta")
    crossing.add(quantity="AE-WR line crossing, readings calibrated by the regressor on the inputs",
                 here=f"{flow['ae_crossing_calibrated']:.4f} +- {flow['ae_crossing_calibrated_seed_std']:.4f}")
    crossing.add(quantity="decimation flow Eq. 5 fixed point", here=f"{flow['decimation_fixed_point']:.4f}",
                 paper=f"{flow['paper_decimation_fixed_point']:.3f}")
    crossing.add(quantity="measured beta' of lattices decimated twice: crossings",
                 here=", ".join(f"{c:.4f}" for c in flow["beta_prime_decimated_crossings"]) or "none in grid")
    for key, name in (("spins", "AE-WR outputs as +-1 spins"), ("raw", "AE-WR outputs raw (no to_spins)")):
        ro = flow["readouts"][key]
        above = sum(ro["above_diagonal"])
        crossing.add(quantity=f"{name}: line crossing (fit over beta {ro['fit_range'][0]:.3f}-"
                              f"{ro['fit_range'][1]:.3f})", here=f"{ro['crossing']:.4f} +- {ro['crossing_error']:.4f}")
        crossing.add(quantity="  fit-free: grid betas with beta' > beta / crossings of the points",
                     here=f"{above} of {len(ro['above_diagonal'])} / "
                          + (", ".join(f"{c:.4f}" for c in ro["point_crossings"]) or "none"))
    matched = flow["beta_prime_decimated_matched"]
    crossing.add(quantity="decimated twice, beta' by matching the exact L/2 nearest-neighbour correlation",
                 here=", ".join(f"{b:.3f}->{m:.3f}" for b, m in zip(flow["beta"], matched)))
    crossing.add(quantity="  its crossings with beta' = beta",
                 here=", ".join(f"{c:.4f}" for c in flow["beta_prime_decimated_matched_crossings"]) or "none")
    crossing.add(quantity="exact beta_c", here=f"{flow['beta_c']:.4f}", paper="0.4352 (the paper's value)")
    crossing.notes.append(f"AE-WR: {s['epochs']} epochs, hinge loss train {wide['ae_wr']['train_loss']:.3f} / "
                          f"val {wide['ae_wr']['val_loss']:.3f} (paper 0.347 / 0.357, 4000 epochs)")
    cost = ResultTable("cost", "Wall and CPU time of this run", ["stage", "wall s", "CPU s", "threads"])
    cost.add(**{"stage": timing["stage"], "wall s": timing["wall_s"], "CPU s": timing["cpu_s"],
                "threads": timing["threads"]})
    return write_results([regressor, crossing, cost], results_dir, stem)


def _tunable_fields():
    """The Settings fields that are command-line options (``quick`` follows ``--quick``)."""
    return [f for f in dataclasses.fields(Settings) if f.name != "quick"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.ising_rg", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", nargs="?", default="all", choices=["all", *STAGES, "rbm"],
                        help="pipeline stage to run (earlier stages it needs run first); all: every stage")
    parser.add_argument("--out", default="runs/ising_rg", help="output folder (data, checkpoints, JSON, PNG)")
    parser.add_argument("--quick", action="store_true",
                        help="8x8 lattices, tiny data, 1 epoch (about 10 s on a 2-core CPU)")
    for field in _tunable_fields():
        parser.add_argument(f"--{field.name.replace('_', '-')}", type={"int": int, "float": float}[str(field.type)],
                            default=None, help=f"{SETTING_HELP[field.name]} (default {getattr(Settings(), field.name)};"
                                               f" quick {getattr(QUICK, field.name)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--results-dir", default=None,
                        help="also write stamped regressor/flow tables <stem>.json|md here (e.g. bench/results)")
    parser.add_argument("--stem", default="ising_rg", help="file stem for --results-dir")
    args, rest = parser.parse_known_args(argv)
    if args.stage == "rbm":
        from models import ising_rbm

        ising_rbm.main(rest + (["--quick"] if args.quick else []) + ["--out", os.path.join(args.out, "rbm")])
        return
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    base = QUICK if args.quick else Settings()
    overrides = {f.name: getattr(args, f.name) for f in _tunable_fields() if getattr(args, f.name) is not None}
    settings = dataclasses.replace(base, **overrides)
    print(f"ising_rg {args.stage}, {'QUICK' if args.quick else 'full'} run: " + ", ".join(
        f"{f.name} {getattr(settings, f.name)}" for f in _tunable_fields()), flush=True)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    wall, cpu = time.perf_counter(), time.process_time()
    if args.stage == "all":
        summary = run_all(settings, args.out, progress)
        print(json.dumps({k: summary[k] for k in ("seconds", "flow") if k in summary}, indent=1)[:2000])
    else:
        STAGES[args.stage](settings, args.out, progress)
    timing = {"stage": args.stage, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
              "threads": torch.get_num_threads()}
    write_json(_path(args.out, f"timing_{args.stage}.json"), timing)
    if args.results_dir:
        if args.stage not in ("all", "flow"):
            parser.error("--results-dir needs the flow stage (flow or all)")
        write_bench_results(args.out, args.results_dir, args.stem, timing)
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
