"""The ``shallow`` and ``models`` stages: shallow CG/UP nets, Models 1-3 (Table I), losses, reconstructions,
weights and spin correlations (Fig. 9-12)."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from physkernels.atomic import write_json  # noqa: E402
from physkernels.physics import rg  # noqa: E402

from .common import ae_config, flat, out_path, PAPER, save_fig, Settings  # noqa: E402
from .data import critical_set  # noqa: E402


def shallow_pairs(critical: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    x, d1, d2 = flat(critical["x"]), flat(critical["d1"]), flat(critical["d2"])
    return {"CG1": (x, d1), "CG2": (d1, d2), "UP1": (d2, d1), "UP2": (d1, x)}


def stage_shallow(s: Settings, out: str, progress: bool) -> dict:
    critical = critical_set(s, out, progress)
    nets, results = {}, {}
    for role, (inputs, targets) in shallow_pairs(critical).items():
        torch.manual_seed(s.seed)
        net = rg.shallow_net(role, s.L)
        history = rg.fit(net, inputs, targets, rg.hinge_loss, ae_config(s, s.epochs),
                         checkpoint=out_path(out, "checkpoints", f"{role}.pt"), desc=rg.shallow_name(role, s.L),
                         progress=progress)
        nets[role] = net
        results[rg.shallow_name(role, s.L)] = {"train_loss": history["train_loss"][-1],
                                               "val_loss": history["val_loss"][-1], "history": history}
    for role in ("HCG1", "HCG2"):  # the hard-coded nets on the same task as CG1/CG2, for comparison
        inputs, targets = shallow_pairs(critical)["CG" + role[-1]]
        with torch.no_grad():
            results[rg.shallow_name(role, s.L)] = {"loss": float(rg.hinge_loss(rg.shallow_net(role, s.L)(inputs),
                                                                               targets))}
    write_json(out_path(out, "shallow.json"), results)
    return nets


def stage_models(s: Settings, out: str, progress: bool) -> dict:
    critical = critical_set(s, out, progress)
    shallow = stage_shallow(s, out, progress)
    x = flat(critical["x"])
    models, histories = {}, {}
    for kind in rg.TABLE_I:
        torch.manual_seed(s.seed)
        model = rg.build_model(kind, s.L, shallow)
        histories[kind] = rg.fit(model, x, x, rg.hinge_loss, ae_config(s, s.epochs),
                                 checkpoint=out_path(out, "checkpoints", f"{kind}.pt"), desc=kind, progress=progress)
        models[kind] = model
    summary = {kind: {"train_loss": h["train_loss"][-1], "val_loss": h["val_loss"][-1],
                      "epochs_trained": h["epochs_trained"], "layers": models[kind].sources,
                      "trainable": models[kind].trainable()} for kind, h in histories.items()}
    summary["weights"] = _weight_analysis(models["model1"], shallow, s.L, out, s.quick)
    _plot_losses(histories, out_path(out, "fig09_losses.png"), s.quick)
    _plot_reconstructions(models, critical["x"][: 3], s.L, out_path(out, "fig10_reconstructions.png"), s.quick)
    write_json(out_path(out, "models.json"), {"settings": dataclasses.asdict(s), "paper": PAPER, "models": summary,
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
    save_fig(fig, path, quick)


def _plot_reconstructions(models: dict, lattices: torch.Tensor, L: int, path: str, quick: bool) -> None:
    kinds = list(models)
    fig, axes = plt.subplots(len(lattices), 1 + len(kinds), figsize=(2.2 * (1 + len(kinds)), 2.2 * len(lattices)),
                             squeeze=False)
    with torch.no_grad():
        outputs = {k: m(flat(lattices)).reshape(-1, L, L) for k, m in models.items()}
    for r in range(len(lattices)):
        axes[r, 0].imshow(lattices[r].numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[r, 0].set_title("input" if r == 0 else "")
        for c, k in enumerate(kinds, start=1):
            axes[r, c].imshow(rg.to_spins(outputs[k][r]).numpy(), cmap="gray", vmin=-1, vmax=1)
            axes[r, c].set_title(k if r == 0 else "")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("Fig. 10: reconstructions (sign of the output)")
    save_fig(fig, path, quick)


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
    save_fig(fig, out_path(out, "fig11_weights.png"), quick)
    save_fig(fig2, out_path(out, "fig12_spin_correlation.png"), quick)
    return stats
