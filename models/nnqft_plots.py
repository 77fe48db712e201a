"""Figures for models.nnqft: Fig. 1 (m_2, m_4 histograms and m_4 against N) and Fig. 2 (u4 against sigma_w)."""

from __future__ import annotations

import math
import os

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .plots import save_figure  # noqa: E402

plt.rcParams.update({"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 14, "legend.fontsize": 11,
                     "figure.dpi": 110, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3})


def _save(fig, result: dict, out_dir: str, name: str) -> str:
    return save_figure(fig, os.path.join(out_dir, name), bool(result.get("quick")), dpi=150)


def plot_fig1(result: dict, out_dir: str) -> list[str]:
    rows = result["widths"]
    cfg = result["config"]
    paths = []
    for n in (2, 4):
        cols = min(5, len(rows))
        nrows = math.ceil(len(rows) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 3.0 * nrows), squeeze=False)
        for ax, r in zip(axes.flat, rows):
            values = np.asarray(r[f"m_{n}_per_bag"])
            ax.hist(values, bins=30, color="C0" if n == 2 else "C2", alpha=0.8)
            ax.axvline(0, color="k", lw=0.8)
            ax.axvline(np.mean(r[f"m_{n}"]), color="C1", lw=2, label="mean over bags")
            if n == 4:
                ax.axvline(np.mean(r["m_4_exact"]), color="C3", lw=2, ls="--", label="exact")
            ax.set_title(f"N = {r['width']}")
            ax.tick_params(labelsize=9)
        for ax in list(axes.flat)[len(rows):]:
            ax.set_visible(False)
        axes.flat[0].legend(frameon=False, fontsize=9)
        fig.supxlabel(f"$m_{n}$ = $(G^{{({n})}}_{{bag}} - G_0^{{({n})}}) / G_0^{{({n})}}$ (every bag and "
                      f"{n}-point combination)")
        fig.suptitle(f"Fig. 1: $m_{n}$ per width (Gauss-net, $\\sigma_W$ = {cfg['sigma_w']}, "
                     f"$\\sigma_b$ = {cfg['sigma_b']}, {cfg['n_bags']} bags x {cfg['n_nets']} networks)")
        fig.tight_layout()
        paths.append(_save(fig, result, out_dir, f"fig1_m{n}_histograms.png"))

    fig, ax = plt.subplots(figsize=(7, 5))
    widths = np.array([r["width"] for r in rows], dtype=float)
    mean = np.array([np.mean(r["m_4"]) for r in rows])
    per_bag = [np.asarray(r["m_4_per_bag_mean"]) for r in rows]
    err = np.array([b.std(ddof=1) / math.sqrt(len(b)) if len(b) > 1 else 0.0 for b in per_bag])
    exact = np.array([np.mean(r["m_4_exact"]) for r in rows])
    background = np.array([np.mean(r["background_4"]) for r in rows])
    pos = mean > 0
    ax.errorbar(widths[pos], mean[pos], yerr=err[pos], fmt="o", ms=7, capsize=3,
                label="measured $\\langle m_4 \\rangle$")
    if (~pos).any():
        ax.plot(widths[~pos], -mean[~pos], "o", mfc="none", color="C0", label="measured, negative (|value|)")
    ax.plot(widths, exact, "-", color="C3", label="exact finite-N 4th cumulant")
    ax.plot(widths, background, ":", color="0.4", label="bag-to-bag spread / $G_0$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width N")
    ax.set_ylabel("$m_4$ (mean over 4-point combos)")
    ax.set_title("$m_4 = O(1/N)$; $m_2$ stays at 0")
    ax.legend(frameon=False)
    paths.append(_save(fig, result, out_dir, "fig1_m4_vs_N.png"))
    return paths


def plot_fig2(result: dict, out_dir: str) -> list[str]:
    paths = []
    by_d: dict[int, list] = {}
    for s in result["series"]:
        by_d.setdefault(s["d_in"], []).append(s)
    for d_in, series in sorted(by_d.items()):
        n = len(series)
        cols = min(n, 2)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.6 * rows), squeeze=False)
        for ax, s in zip(axes.flat, series):
            sig = np.array([p["sigma_w"] for p in s["points"]])
            u = np.array([p["u4"] for p in s["points"]])
            err = np.array([p["u4_err"] for p in s["points"]])
            exact = np.array([p["u4_exact"] for p in s["points"]])
            neg = u < 0
            ax.errorbar(sig[neg], -u[neg], yerr=err[neg], fmt="o", ms=5, capsize=2, label="$-u_4$ measured")
            ax.errorbar(sig[~neg], u[~neg], yerr=err[~neg], fmt="s", mfc="none", ms=5, capsize=2, color="C1",
                        label="$+u_4$ measured (u4 > 0)")
            ax.plot(sig, np.abs(exact), "-", color="C3", lw=1.5, label="|exact finite-N $u_4$|")
            ax.plot(sig, err, "-", color="0.6", lw=1, label="statistical error of $u_4$")
            fit = s.get("fit_u4", {})
            if "slope" in fit:
                ax.plot(sig, np.exp(fit["intercept"]) * sig ** fit["slope"], "--", color="C0",
                        label=f"fit: slope {fit['slope']:.2f} $\\pm$ {fit['slope_err']:.2f}")
            pred = s["predicted_slope_u4"]
            anchor = np.abs(u[0]) if u[0] != 0 else 1.0
            ax.plot(sig, anchor * (sig / sig[0]) ** pred, ":", color="k", label=f"Eq. 4.6: slope {pred:g}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ends = {float(sig.min()), float(sig.max())}  # the measured range's ends are always labelled
            ax.set_xticks(sorted(ends | {t for t in (1, 2, 5, 10, 20) if sig.min() <= t <= sig.max()}))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("$\\sigma_W$")
            ax.set_ylabel("$|u_4|$")
            ax.set_title(f"N = {s['width']}, $d_{{in}}$ = {d_in}")
            ax.legend(frameon=True, framealpha=0.85, fontsize=9, loc="best")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        cfg = result["config"]
        fig.suptitle(f"$u_4$ flow with $\\sigma_W$ ($\\sigma_b$ = {cfg['sigma_b']}, {cfg['n_bags']} bags x "
                     f"{cfg['n_nets']} networks)", y=1.01)
        fig.tight_layout()
        paths.append(_save(fig, result, out_dir, f"fig2_u4_d{d_in}.png"))
    return paths
