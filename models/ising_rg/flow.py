"""The ``flow`` stage (Fig. 16): beta' of AE-WR outputs (read as spins and raw, over AE-WR seeds) and of
decimated lattices (regressor and exact correlation matching), and their crossings with beta' = beta."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from physkernels.atomic import write_json  # noqa: E402
from physkernels.physics import rg  # noqa: E402

from .common import flat, out_path, PAPER, save_fig, Settings  # noqa: E402
from .data import grid_set  # noqa: E402
from .regression import predict_beta, stage_widerange, train_ae_wr  # noqa: E402


def stage_flow(s: Settings, out: str, progress: bool) -> dict:
    """Fig. 16: beta' measured by the regressors on AE-WR outputs and on lattices decimated twice.

    The AE crossing with ``beta' = beta`` is the paper's straight-line fit through the per-beta mean of the
    seed-averaged predictions. Its error combines (in quadrature) a bootstrap over the test lattices and the
    spread of the crossings obtained with each regressor seed alone. ``readouts`` repeats the analysis for
    ``ae_seeds`` AE-WRs, reading their outputs as +-1 spins (``to_spins``) and raw; the decimated lattices are
    also read without a regressor, by matching their nearest-neighbour correlation to the exact L/2 value.
    """
    ae, regressors, half_regressors = stage_widerange(s, out, progress)
    grid = grid_set(s, out, progress)
    betas = grid["beta"].numpy()
    shape = (len(regressors), *grid["x"].shape[:2])
    lattices = grid["x"].flatten(0, 1)
    readings = {"spins": [], "raw": []}  # per AE-WR seed: (regressor seed, beta, lattice)
    for k in range(s.ae_seeds):
        model = ae if k == 0 else train_ae_wr(s, out, progress, k)[0]
        with torch.no_grad():
            raw_outputs = model(flat(lattices)).reshape(lattices.shape)
        readings["spins"].append(predict_beta(regressors, rg.to_spins(raw_outputs)).reshape(shape))
        readings["raw"].append(predict_beta(regressors, raw_outputs).reshape(shape))
    on_input = predict_beta(regressors, lattices).reshape(shape)
    on_ae = readings["spins"][0]
    decimated = rg.decimate(rg.decimate(lattices))
    on_decimated = predict_beta(half_regressors, decimated).reshape(shape)
    readouts = {key: readouts_over_seeds(betas, r, s) for key, r in readings.items()}
    first = readouts["spins"]["per_ae_seed"][0]  # the paper's reading: AE-WR seed 0 as spins
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
              "fit_slope": first["slope"], "fit_intercept": first["intercept"], "ae_crossing": first["crossing"],
              "ae_crossing_error": first["crossing_error"], "ae_crossing_bootstrap_std": first["bootstrap_std"],
              "ae_crossing_bootstrap_ci95": first["bootstrap_ci95"], "ae_crossing_per_seed": first["crossing_per_seed"],
              "ae_crossing_seed_std": first["seed_std"], "paper_ae_crossing": PAPER["ae_crossing"],
              "beta_prime_ae_calibrated": np.mean(calibrated, 0).tolist(),
              "ae_crossing_calibrated": float(np.mean(calibrated_crossings)),
              "ae_crossing_calibrated_seed_std": float(np.std(calibrated_crossings, ddof=1))
              if len(calibrated_crossings) > 1 else 0.0,
              "beta_prime_decimated": decimated_curve.tolist(),
              "beta_prime_decimated_crossings": rg.curve_crossings(betas, decimated_curve),
              "beta_prime_two_decimation_steps_eq5": two_steps.tolist(),
              "decimation_fixed_point": fixed_point, "paper_decimation_fixed_point": PAPER["decimation_fixed_point"],
              "beta_c": rg.BETA_C, "fit_range": [float(betas.min()), float(betas.max())],
              "readouts": readouts,
              "decimated_nn_correlation": correlations.tolist(), "beta_prime_decimated_matched": matched,
              "beta_prime_decimated_matched_crossings": rg.curve_crossings(
                  betas[np.isfinite(matched)], np.array(matched)[np.isfinite(matched)])}
    _plot_flow(result, on_ae.mean(0).std(1), out_path(out, "fig16_flow.png"), s.quick)
    _plot_readouts(result, out_path(out, "fig16b_readouts.png"), s.quick)
    write_json(out_path(out, "flow.json"), result)
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
    return {"beta_prime": mean.tolist(), "crossing": boot["crossing"], "slope": boot["slope"],
            "intercept": boot["intercept"], "crossing_error": float(np.hypot(boot["std"], seed_std)),
            "bootstrap_std": boot["std"], "bootstrap_ci95": boot["ci95"], "crossing_per_seed": per_seed,
            "seed_std": seed_std,
            "fit_range": [float(betas.min()), float(betas.max())],
            "above_diagonal": [bool(v) for v in mean > betas],
            "point_crossings": rg.curve_crossings(betas, mean)}


def readouts_over_seeds(betas: np.ndarray, per_ae_seed: list[np.ndarray], s: Settings) -> dict:
    """:func:`readout_summary` of each AE-WR seed's readings, and over the AE-WR seeds: the mean beta' curve, the
    mean line crossing and its standard deviation across AE-WR seeds."""
    summaries = [readout_summary(betas, r, s) for r in per_ae_seed]
    crossings = np.array([r["crossing"] for r in summaries])
    return {"per_ae_seed": summaries, "beta_prime": np.mean([r["beta_prime"] for r in summaries], 0).tolist(),
            "crossing": float(crossings.mean()),
            "crossing_std_over_ae_seeds": float(crossings.std(ddof=1)) if len(crossings) > 1 else float("nan"),
            "fit_range": summaries[0]["fit_range"],
            "above_diagonal_per_ae_seed": [sum(r["above_diagonal"]) for r in summaries],
            "point_crossings_per_ae_seed": [r["point_crossings"] for r in summaries]}


def _plot_readouts(r: dict, path: str, quick: bool) -> None:
    """beta' of the AE-WR outputs read raw and as spins, and of decimated lattices by correlation matching."""
    betas = np.array(r["beta"])
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for key, colour, label in (("spins", "tab:blue", "AE-WR outputs as +-1 spins"),
                               ("raw", "tab:orange", "AE-WR outputs raw (real values)")):
        ro = r["readouts"][key]
        seeds = len(ro["per_ae_seed"])
        ax.plot(betas, ro["beta_prime"], "o", ms=4, color=colour,
                label=f"{label} (mean of {seeds} AE-WR): line fit "
                      f"{_crossing(ro['crossing'], ro['crossing_std_over_ae_seeds'])}")
    ax.plot(betas, r["beta_prime_decimated_matched"], "s", ms=4, mfc="none", color="tab:red",
            label="decimated twice, beta' from the exact nearest-neighbour correlation (no regressor)")
    ax.plot(betas, r["beta_prime_decimated"], "d", ms=4, mfc="none", color="tab:gray",
            label="decimated twice, L/2 regressor")
    ax.plot(betas, betas, "k-", lw=0.8, label="beta' = beta")
    ax.axvline(r["beta_c"], color="gray", ls=":", label=f"beta_c = {r['beta_c']:.4f}")
    ax.set(xlabel="beta", ylabel="beta'", title="beta' by readout: fit range "
           f"{r['fit_range'][0]:.3f}-{r['fit_range'][1]:.3f}")
    top = max(np.nanmax(r["readouts"][k]["beta_prime"]) for k in ("spins", "raw"))
    ax.set_ylim(-0.02, top + 0.3)  # room for the legend above the points
    ax.legend(fontsize=6.5, loc="upper left")
    save_fig(fig, path, quick)


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
    save_fig(fig, path, quick)
