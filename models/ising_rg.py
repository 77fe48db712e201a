"""Decimation RG versus autoencoders on the 2D Ising model (Shukla & Thakur, arXiv:2108.06157), end to end.

Stages (each a subcommand; ``all`` runs them in order, later stages reuse what earlier ones saved in ``--out``):

* ``data``: Monte Carlo lattices (``physkernels.physics.ising.sample``): the ``beta = 0.4352`` set with its two
  successive decimations, the wide-range set (beta uniform in [0.01, 0.6), drawn on ``--wide-betas`` random
  temperatures) and a test grid of 20 beta in [0.025, 0.5] (entropy, regressor accuracy, flow).
* ``shallow``: trains CG-n-n/2, CG-n/2-n/4, UP-n/4-n/2, UP-n/2-n on (lattice, decimated lattice) pairs.
* ``models``: Models 1, 2, 3 (and the hard-coded Model 3-H) wired as in Table I; losses (Fig. 9 / A.1),
  reconstructions (Fig. 10), weight matrices and spin correlations W W^T (Fig. 11-12).
* ``widerange``: AE-WR (Model 1 on the wide-range set, Fig. A.2) and the beta regressor (Fig. 15).
* ``entropy``: local 3x3 Shannon entropy vs beta of input, AE-WR output and decimated lattice (Fig. 13-14).
* ``flow``: beta predicted for AE-WR outputs vs beta, its crossing with beta' = beta (paper: 0.4527), next to the
  decimation flow beta' = 3/8 ln cosh 4 beta (fixed point 0.507; paper: 0.505) (Fig. 16).
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

from physkernels.physics import rg  # noqa: E402
from physkernels.physics.ising import sample  # noqa: E402

BETA_DATA = 0.4352
PAPER = {"loss_model1": 0.276, "loss_model2": 0.338, "loss_model3": 0.600, "val_loss_model1": 0.281,
         "val_loss_model2": 0.341, "val_loss_model3": 0.601, "ae_crossing": 0.45265, "decimation_fixed_point": 0.505}


@dataclasses.dataclass
class Settings:
    L: int = 32
    n_critical: int = 10000
    n_wide: int = 10000
    wide_betas: int = 100
    grid_betas: int = 20
    grid_lattices: int = 200
    epochs: int = 20
    regressor_epochs: int = 20
    lr: float = 1e-3
    l1: float = 1e-5
    seed: int = 0


QUICK = Settings(L=8, n_critical=200, n_wide=200, wide_betas=5, grid_betas=5, grid_lattices=20, epochs=1,
                 regressor_epochs=2)


# ----------------------------------------------------------------------------------------------------- helpers
def _path(out: str, *parts: str) -> str:
    path = os.path.join(out, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _save_figure(fig, path: str) -> None:
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


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


def stage_data(s: Settings, out: str, progress: bool) -> dict:
    def critical():
        x = sample(s.L, BETA_DATA, s.n_critical, seed=s.seed, progress=progress)
        d1 = rg.decimate(x)
        return {"x": x, "d1": d1, "d2": rg.decimate(d1), "beta": BETA_DATA}

    def wide():
        rng = np.random.default_rng(s.seed)
        betas = np.sort(rng.uniform(0.01, 0.6, s.wide_betas))
        counts = np.full(s.wide_betas, s.n_wide // s.wide_betas)
        counts[: s.n_wide % s.wide_betas] += 1
        xs, bs = [], []
        for i, (beta, n) in enumerate(tqdm(list(zip(betas, counts)), desc="wide-range set", disable=not progress)):
            xs.append(sample(s.L, float(beta), int(n), seed=s.seed + 1 + i))
            bs.append(torch.full((int(n),), float(beta)))
        return {"x": torch.cat(xs), "beta": torch.cat(bs)}

    def grid():
        betas = grid_betas(s)
        xs = [sample(s.L, float(b), s.grid_lattices, seed=s.seed + 100_000 + i)
              for i, b in enumerate(tqdm(betas, desc="test grid", disable=not progress))]
        return {"x": torch.stack(xs), "beta": torch.tensor(betas)}

    data = {"critical": _cached(_path(out, "data", "critical.pt"), critical),
            "wide": _cached(_path(out, "data", "wide.pt"), wide),
            "grid": _cached(_path(out, "data", "grid.pt"), grid)}
    return data


# ---------------------------------------------------------------------------------------------- shallow nets
def shallow_pairs(critical: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    x, d1, d2 = _flat(critical["x"]), _flat(critical["d1"]), _flat(critical["d2"])
    return {"CG1": (x, d1), "CG2": (d1, d2), "UP1": (d2, d1), "UP2": (d1, x)}


def stage_shallow(s: Settings, out: str, progress: bool) -> dict:
    data = stage_data(s, out, progress)
    nets, results = {}, {}
    for role, (inputs, targets) in shallow_pairs(data["critical"]).items():
        torch.manual_seed(s.seed)
        net = rg.shallow_net(role, s.L)
        history = rg.fit(net, inputs, targets, rg.hinge_loss, _config(s, s.epochs),
                         checkpoint=_path(out, "checkpoints", f"{role}.pt"), desc=rg.shallow_name(role, s.L),
                         progress=progress)
        nets[role] = net
        results[rg.shallow_name(role, s.L)] = {"train_loss": history["train_loss"][-1],
                                               "val_loss": history["val_loss"][-1], "history": history}
    for role in ("HCG1", "HCG2"):  # the hard-coded nets on the same task as CG1/CG2, for comparison
        inputs, targets = shallow_pairs(data["critical"])["CG" + role[-1]]
        with torch.no_grad():
            results[rg.shallow_name(role, s.L)] = {"loss": float(rg.hinge_loss(rg.shallow_net(role, s.L)(inputs),
                                                                               targets))}
    _write_json(_path(out, "shallow.json"), results)
    return nets


# ------------------------------------------------------------------------------------------------ Models 1-3
def stage_models(s: Settings, out: str, progress: bool) -> dict:
    data = stage_data(s, out, progress)
    shallow = stage_shallow(s, out, progress)
    x = _flat(data["critical"]["x"])
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
    summary["weights"] = _weight_analysis(models["model1"], shallow, s.L, out)
    _plot_losses(histories, _path(out, "fig09_losses.png"))
    _plot_reconstructions(models, data["critical"]["x"][: 3], s.L, _path(out, "fig10_reconstructions.png"))
    _write_json(_path(out, "models.json"), {"settings": dataclasses.asdict(s), "paper": PAPER, "models": summary,
                                            "histories": histories})
    return models


def _plot_losses(histories: dict, path: str) -> None:
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
    _save_figure(fig, path)


def _plot_reconstructions(models: dict, lattices: torch.Tensor, L: int, path: str) -> None:
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
    _save_figure(fig, path)


def _band_weight(corr: torch.Tensor, offsets: tuple[int, ...]) -> float:
    """Fraction of sum |C_ij| on the diagonals ``j - i`` in ``offsets``."""
    n = corr.shape[0]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mask = torch.zeros_like(corr, dtype=torch.bool)
    for d in offsets:
        mask |= (j - i) == d
    return float(corr.abs()[mask].sum() / corr.abs().sum())


def _weight_analysis(ae, shallow: dict, L: int, out: str) -> dict:
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
    _save_figure(fig, _path(out, "fig11_weights.png"))
    _save_figure(fig2, _path(out, "fig12_spin_correlation.png"))
    return stats


# ------------------------------------------------------------------------------------------ AE-WR, regressor
def stage_widerange(s: Settings, out: str, progress: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    data = stage_data(s, out, progress)
    x, beta = _flat(data["wide"]["x"]), data["wide"]["beta"].float()
    torch.manual_seed(s.seed)
    ae = rg.build_model("model1", s.L)
    ae_history = rg.fit(ae, x, x, rg.hinge_loss, _config(s, s.epochs), checkpoint=_path(out, "checkpoints",
                        "ae_wr.pt"), desc="AE-WR", progress=progress)
    regressor = rg.BetaRegressor(s.L)
    reg_history = rg.fit(regressor, x, beta, rg.mse_loss, _config(s, s.regressor_epochs),
                         checkpoint=_path(out, "checkpoints", "regressor.pt"), desc="beta regressor",
                         progress=progress)
    grid = data["grid"]
    with torch.no_grad():
        predicted = regressor(_flat(grid["x"].flatten(0, 1))).reshape(grid["x"].shape[:2])
    actual = grid["beta"].float()[:, None].expand_as(predicted)
    test_mse = float(((predicted - actual) ** 2).mean())
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.errorbar(grid["beta"], predicted.mean(1), yerr=predicted.std(1), fmt="o", ms=3, label="test lattices")
    ax.plot([0, 0.6], [0, 0.6], "k-", lw=0.8, label="predicted = actual")
    ax.set(xlabel="actual beta", ylabel="predicted beta", title=f"Fig. 15: beta regressor (test MSE {test_mse:.4f})")
    ax.legend()
    _save_figure(fig, _path(out, "fig15_regressor.png"))
    _write_json(_path(out, "widerange.json"), {
        "ae_wr": {"train_loss": ae_history["train_loss"][-1], "val_loss": ae_history["val_loss"][-1],
                  "paper": {"train_loss": 0.347, "val_loss": 0.357}, "history": ae_history},
        "regressor": {"train_mse": reg_history["train_loss"][-1], "val_mse": reg_history["val_loss"][-1],
                      "test_mse": test_mse, "paper_train_mse": 0.0035, "history": reg_history}})
    return ae, regressor


# ------------------------------------------------------------------------------------------------- entropy
def stage_entropy(s: Settings, out: str, progress: bool) -> dict:
    data = stage_data(s, out, progress)
    ae, _ = stage_widerange(s, out, progress)
    grid = data["grid"]
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
    _save_figure(fig, _path(out, "fig13_entropy.png"))
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
    _save_figure(fig, _path(out, "fig14_lattices.png"))
    result = {"beta": betas, **curves}
    _write_json(_path(out, "entropy.json"), result)
    return result


# ---------------------------------------------------------------------------------------------------- flow
def line_crossing(beta: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line ``predicted = a beta + b`` and its crossing with ``beta' = beta`` (``b / (1 - a)``)."""
    a, b = np.polyfit(beta, predicted, 1)
    return float(a), float(b), float(b / (1 - a)) if a != 1 else float("nan")


def stage_flow(s: Settings, out: str, progress: bool) -> dict:
    data = stage_data(s, out, progress)
    ae, regressor = stage_widerange(s, out, progress)
    grid = data["grid"]
    with torch.no_grad():
        lattices = _flat(grid["x"].flatten(0, 1))
        on_input = regressor(lattices).reshape(grid["x"].shape[:2]).mean(1).numpy()
        on_output = regressor(rg.to_spins(ae(lattices))).reshape(grid["x"].shape[:2]).mean(1).numpy()
    betas = grid["beta"].numpy()
    a, b, crossing = line_crossing(betas, on_output)
    fixed_point = rg.flow_fixed_point()
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(betas, on_output, "o", ms=4, color="tab:blue", label="beta' of AE-WR outputs (regressor)")
    ax.plot(betas, a * betas + b, "-", color="tab:blue", lw=1, label=f"fit: crosses at {crossing:.4f}")
    ax.plot(betas, on_input, "x", ms=4, color="tab:green", label="regressor on the inputs")
    fine = np.linspace(0, max(0.6, fixed_point + 0.05), 200)
    ax.plot(fine, [rg.flow_beta(float(t)) for t in fine], "r-", label=f"decimation 3/8 ln cosh 4beta "
                                                                         f"(fixed point {fixed_point:.4f})")
    ax.plot(fine, fine, "k-", lw=0.8, label="beta' = beta")
    ax.axvline(rg.BETA_C, color="gray", ls=":", label=f"beta_c = {rg.BETA_C:.4f}")
    ax.set(xlabel="beta", ylabel="beta'", title="Fig. 16: AE flow vs decimation flow (paper crossing 0.4527)")
    ax.legend(fontsize=7)
    _save_figure(fig, _path(out, "fig16_flow.png"))
    result = {"beta": betas.tolist(), "beta_prime_ae": on_output.tolist(), "beta_regressor_on_input": on_input.tolist(),
              "fit_slope": a, "fit_intercept": b, "ae_crossing": crossing, "paper_ae_crossing": PAPER["ae_crossing"],
              "decimation_fixed_point": fixed_point, "paper_decimation_fixed_point": PAPER["decimation_fixed_point"],
              "beta_c": rg.BETA_C}
    _write_json(_path(out, "flow.json"), result)
    return result


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
    _write_json(_path(out, "summary.json"), summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.ising_rg", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", nargs="?", default="all", choices=["all", *STAGES, "rbm"])
    parser.add_argument("--out", default="runs/ising_rg")
    parser.add_argument("--quick", action="store_true", help="8x8 lattices, tiny data, 1 epoch (< 1 minute)")
    for field in dataclasses.fields(Settings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type={"int": int, "float": float}[str(field.type)],
                            default=None, help=f"default {getattr(Settings(), field.name)} (quick: "
                                               f"{getattr(QUICK, field.name)})")
    parser.add_argument("--no-progress", action="store_true")
    args, rest = parser.parse_known_args(argv)
    if args.stage == "rbm":
        from models import ising_rbm

        ising_rbm.main(rest + (["--quick"] if args.quick else []) + ["--out", os.path.join(args.out, "rbm")])
        return
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    base = QUICK if args.quick else Settings()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                 if getattr(args, f.name) is not None}
    settings = dataclasses.replace(base, **overrides)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    if args.stage == "all":
        summary = run_all(settings, args.out, progress)
        print(json.dumps({k: summary[k] for k in ("seconds", "flow") if k in summary}, indent=1)[:2000])
    else:
        STAGES[args.stage](settings, args.out, progress)
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
