"""The ``widerange`` stage: AE-WR (Model 1 on the wide-range set) and the beta regressors (Fig. 15)."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from physkernels.atomic import write_json  # noqa: E402
from physkernels.physics import rg  # noqa: E402

from .common import ae_config, flat, out_path, save_fig, Settings  # noqa: E402
from .data import grid_set, wide_set  # noqa: E402


def regressor_config(s: Settings, seed: int) -> rg.TrainConfig:
    """Adam at ``regressor_lr``, cosine-decayed to ``regressor_final_lr`` (equal values: constant)."""
    return rg.TrainConfig(epochs=s.regressor_epochs, batch_size=s.regressor_batch, lr=s.regressor_lr,
                          final_lr=s.regressor_final_lr, l1=s.regressor_l1, seed=seed)


def train_regressors(s: Settings, out: str, progress: bool, L: int) -> tuple[list[rg.BetaRegressor], list[dict]]:
    """``regressor_seeds`` beta regressors for ``L x L`` lattices, trained on the ``L x L`` wide-range set
    (seeds ``s.seed + k`` for the initialisation, the validation split and the shuffling)."""
    wide = wide_set(s, out, progress, L)
    x, beta = flat(wide["x"]), wide["beta"].float()
    regressors, histories = [], []
    for k in range(s.regressor_seeds):
        torch.manual_seed(s.seed + k)
        model = rg.BetaRegressor(L, initial_beta=float(beta.mean()))
        history = rg.fit(model, x, beta, rg.mse_loss, regressor_config(s, s.seed + k),
                         checkpoint=out_path(out, "checkpoints", f"regressor_L{L}_seed{k}.pt"),
                         desc=f"beta regressor {L}x{L} #{k}", progress=progress)
        history["dead_relu_fraction"] = model.dead_fraction(x)
        regressors.append(model)
        histories.append(history)
    return regressors, histories


def predict_beta(regressors: list[rg.BetaRegressor], lattices: torch.Tensor) -> np.ndarray:
    """Beta predicted by every regressor for every lattice: ``(n_regressors, N)`` for lattices ``(N, L, L)``."""
    with torch.no_grad():
        x = flat(lattices)
        return torch.stack([model(x) for model in regressors]).numpy()


def train_ae_wr(s: Settings, out: str, progress: bool, k: int) -> tuple[torch.nn.Module, dict]:
    """AE-WR number ``k`` (Model 1 on the wide-range set, seed ``s.seed + k``; checkpoint ``ae_wr.pt`` for k = 0,
    ``ae_wr_seed<k>.pt`` otherwise) and its training history."""
    x = flat(wide_set(s, out, progress)["x"])
    torch.manual_seed(s.seed + k)
    ae = rg.build_model("model1", s.L)
    config = dataclasses.replace(ae_config(s, s.epochs), seed=s.seed + k)
    history = rg.fit(ae, x, x, rg.hinge_loss, config, progress=progress, desc=f"AE-WR #{k}",
                     checkpoint=out_path(out, "checkpoints", "ae_wr.pt" if k == 0 else f"ae_wr_seed{k}.pt"))
    return ae, history


def stage_widerange(s: Settings, out: str, progress: bool) -> tuple[torch.nn.Module, list, list]:
    """AE-WR and the beta regressors (for ``L`` and for the ``L/2`` decimated lattices); Fig. 15."""
    grid = grid_set(s, out, progress)
    ae, ae_history = train_ae_wr(s, out, progress, 0)
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
                    out_path(out, "fig15_regressor.png"), s.quick)

    def summary(hs: list[dict]) -> dict:
        return {"train_mse": [h["train_loss"][-1] for h in hs], "val_mse": [h["val_loss"][-1] for h in hs],
                "dead_relu_fraction": [h["dead_relu_fraction"] for h in hs], "epochs": hs[0]["epochs_trained"],
                "histories": hs}

    write_json(out_path(out, "widerange.json"), {
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
    save_fig(fig, path, quick)
