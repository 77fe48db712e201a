"""The ``entropy`` stage: local 3x3 Shannon entropy of inputs, AE-WR outputs and decimated lattices
(Fig. 13-14)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from physkernels.atomic import write_json  # noqa: E402
from physkernels.physics import rg  # noqa: E402

from .common import flat, out_path, save_fig, Settings  # noqa: E402
from .data import grid_set  # noqa: E402
from .regression import stage_widerange  # noqa: E402


def stage_entropy(s: Settings, out: str, progress: bool) -> dict:
    ae, _, _ = stage_widerange(s, out, progress)
    grid = grid_set(s, out, progress)
    curves = {"input": [], "autoencoder": [], "decimated": []}
    with torch.no_grad():
        for x in grid["x"]:
            output = ae(flat(x)).reshape(x.shape)
            curves["input"].append(float(rg.lattice_entropy(x).mean()))
            curves["autoencoder"].append(float(rg.lattice_entropy(output).mean()))
            curves["decimated"].append(float(rg.lattice_entropy(rg.decimate(rg.decimate(x))).mean()))
    betas = grid["beta"].tolist()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(betas, values, "o-", ms=3, label=name)
    ax.set(xlabel="beta", ylabel="mean local entropy per spin (bits, 3x3)", title="Fig. 13: local Shannon entropy")
    ax.legend()
    save_fig(fig, out_path(out, "fig13_entropy.png"), s.quick)
    picks = [0, len(betas) // 2, len(betas) - 1]
    fig, axes = plt.subplots(3, 3, figsize=(7, 7))
    with torch.no_grad():
        for c, i in enumerate(picks):
            x = grid["x"][i, 0]
            rows = [x, rg.to_spins(ae(flat(x[None])).reshape(x.shape)), rg.decimate(rg.decimate(x))]
            for r, lattice in enumerate(rows):
                axes[r, c].imshow(lattice.numpy(), cmap="gray", vmin=-1, vmax=1)
                axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            axes[0, c].set_title(f"beta = {betas[i]:.3f}")
    for r, name in enumerate(("input", "AE-WR output", "decimated twice")):
        axes[r, 0].set_ylabel(name)
    save_fig(fig, out_path(out, "fig14_lattices.png"), s.quick)
    result = {"beta": betas, **curves}
    write_json(out_path(out, "entropy.json"), result)
    return result
