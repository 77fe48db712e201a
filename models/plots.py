"""Figure saving shared by the drivers (:func:`save_figure`: atomic, quick runs labelled) and the MPO paper's two
figures from a results list: accuracy vs bond dimension D (Fig. 2) and vs depth (Fig. 3).

Each entry of ``summaries`` is a dict with ``model``, ``bond_dim``, ``mean``, ``sigma``, ``mpo``, ``twin``,
``family``, ``depth`` (what models.train writes in results.json).
"""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


QUICK_BANNER = "QUICK RUN: tiny data and settings, not the paper's configuration"


def save_figure(fig, path: str, quick: bool = False, dpi: int = 120) -> str:
    """Save ``fig`` as a PNG atomically (temporary file, then ``os.replace``) and close it; returns the path.
    A quick run's figure carries a red banner over its top and ``_quick`` before the extension, so it is never
    mistaken for a full run's."""
    if quick:
        root, ext = os.path.splitext(path)
        path = f"{root}_quick{ext}"
        title = getattr(fig, "_suptitle", None)  # above the figure's own title, when it has one
        top = 1.0 if title is None else title.get_position()[1] + 0.03 * (1 + title.get_text().count("\n"))
        fig.text(0.5, top + 0.02, QUICK_BANNER, ha="center", va="bottom", color="tab:red", fontsize=11,
                 weight="bold")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path



def accuracy_vs_bond_dim(summaries: list[dict], path: str, title: str = "", quick: bool = False) -> str | None:
    """Fig. 2: each MPO model's accuracy +- sigma vs D; its dense twin as a line with a dashed +- sigma band."""
    mpo = defaultdict(list)
    for s in summaries:
        if s["mpo"] and s["bond_dim"] is not None:
            mpo[s["model"]].append(s)
    if not mpo:
        return None
    dense = {s["model"]: s for s in summaries if not s["mpo"]}
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (name, rows) in enumerate(sorted(mpo.items())):
        rows.sort(key=lambda r: r["bond_dim"])
        color = f"C{i}"
        ax.errorbar([r["bond_dim"] for r in rows], [r["mean"] for r in rows], [r["sigma"] for r in rows],
                    marker="o", capsize=3, color=color, label=f"{name}")
        twin = dense.get(rows[0]["twin"])
        if twin is not None:
            ax.axhline(twin["mean"], color=color, lw=1.2, label=f"{twin['model']} (dense)")
            for sign in (-1, 1):
                ax.axhline(twin["mean"] + sign * twin["sigma"], color=color, lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bond dimension D")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy vs bond dimension (MPO paper Fig. 2)")
    ax.legend(fontsize=8)
    return save_figure(fig, path, quick)


def accuracy_vs_depth(summaries: list[dict], path: str, title: str = "", quick: bool = False) -> str | None:
    """Fig. 3: accuracy +- sigma vs depth for every (family, dense/MPO) with at least two depths."""
    series = defaultdict(list)
    for s in summaries:
        if s.get("depth") is not None:
            series[(s["family"], "MPO-Net" if s["mpo"] else "dense")].append(s)
    series = {k: v for k, v in series.items() if len({r["depth"] for r in v}) >= 2}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (family, kind), rows in sorted(series.items()):
        rows.sort(key=lambda r: r["depth"])
        ax.errorbar([r["depth"] for r in rows], [r["mean"] for r in rows], [r["sigma"] for r in rows],
                    marker="o" if kind == "dense" else "s", capsize=3, label=f"{family} {kind}")
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy vs depth (MPO paper Fig. 3)")
    ax.legend(fontsize=8)
    return save_figure(fig, path, quick)
