"""Settings, the paper's reference values and the helpers every stage of ``models.ising_rg`` shares."""

from __future__ import annotations

import dataclasses
import os

import torch

from models.plots import save_figure
from physkernels.physics import rg


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
    ae_seeds: int = 1
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
    "ae_seeds": "independently trained AE-WRs whose outputs the flow stage reads (the crossing's spread over them)",
    "bootstrap": "bootstrap resamples of the error bars", "seed": "random seed of sampling and training"}
QUICK = Settings(L=8, n_critical=200, n_wide=400, wide_betas=20, grid_betas=5, grid_lattices=20, epochs=1,
                 regressor_epochs=15, regressor_seeds=2, ae_seeds=2, bootstrap=50, quick=True)


def out_path(out: str, *parts: str) -> str:
    path = os.path.join(out, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def save_fig(fig, path: str, quick: bool) -> None:
    save_figure(fig, path, quick, dpi=110)


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).float()


def ae_config(s: Settings, epochs: int) -> rg.TrainConfig:
    return rg.TrainConfig(epochs=epochs, lr=s.lr, l1=s.l1, seed=s.seed)


def cached(path: str, make):
    """Load ``path`` if it exists, else build it with ``make()`` and save it atomically."""
    if os.path.exists(path):
        return torch.load(path, weights_only=False)
    value = make()
    rg.save_atomic(value, path)
    return value
