"""A Bernoulli RBM (Eq. 23 of the RBM source paper) trained on L = 4 Ising lattices, checked against the exact
Boltzmann distribution by enumerating all 2^16 configurations.

For each training method (CD-1, CD-k, PCD-1) it reports per epoch the exact KL divergence
``KL(p_Ising || p_RBM)`` and, at the end, the energy per spin and ``<|m|>`` under the RBM (exact, by enumeration,
and from block-Gibbs samples drawn with the fused kernel) next to the exact Ising values.

    python -m models.ising_rbm [--quick] [--beta 0.4352] [--source exact|mc] [--out runs/ising_rbm]

``--source exact`` draws training lattices exactly from the enumerated distribution; ``mc`` uses
``physkernels.physics.ising.sample`` (Wolff). Also reachable as ``python -m models.ising_rg rbm``.
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from physkernels.atomic import write_json  # noqa: E402
from physkernels.physics.rbm import BernoulliRBM, all_binary_states, spins_to_visible, train_rbm  # noqa: E402

from models.plots import save_figure  # noqa: E402

L = 4


def ising_energy_per_spin(spins: torch.Tensor) -> torch.Tensor:
    """``E / N = -(1/N) sum_<ij> s_i s_j`` on the periodic ``L x L`` lattice, J = 1; ``(B, L, L) -> (B,)``."""
    bonds = spins * torch.roll(spins, 1, -1) + spins * torch.roll(spins, 1, -2)
    return -bonds.sum(dim=(-2, -1)) / (spins.shape[-1] * spins.shape[-2])


def exact_ising(beta: float) -> dict:
    """All ``2^(L^2)`` configurations (as visible units and spins) with their Boltzmann probabilities."""
    visible = all_binary_states(L * L)
    spins = (2 * visible - 1).reshape(-1, L, L)
    energy = ising_energy_per_spin(spins)
    log_p = torch.log_softmax(-beta * L * L * energy, 0)
    return {"visible": visible, "energy": energy, "abs_m": spins.mean(dim=(-2, -1)).abs(), "log_p": log_p}


def training_data(exact: dict, beta: float, n: int, source: str, seed: int) -> torch.Tensor:
    if source == "exact":
        idx = torch.multinomial(exact["log_p"].exp(), n, replacement=True,
                                generator=torch.Generator().manual_seed(seed))
        return exact["visible"][idx]
    from physkernels.physics.ising import sample

    return spins_to_visible(sample(L, beta, n, seed=seed))


def rbm_log_probs(rbm: BernoulliRBM, visible: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return -rbm.free_energy(visible.to(rbm.W.dtype)).double() - rbm.log_partition().double()


def compare(rbm: BernoulliRBM, exact: dict, n_gibbs: int, seed: int) -> dict:
    """Exact KL and observables of the RBM distribution, plus the same observables from Gibbs samples."""
    log_q = rbm_log_probs(rbm, exact["visible"])
    p, q = exact["log_p"].exp(), log_q.exp()
    with torch.no_grad():
        start = torch.bernoulli(torch.full((n_gibbs, L * L), 0.5, dtype=rbm.W.dtype),
                                generator=torch.Generator().manual_seed(seed))
        samples, _ = rbm.sample(start, k=200, seed=seed)
    spins = (2 * samples.double() - 1).reshape(-1, L, L)
    return {
        "kl_exact_to_rbm": float((p * (exact["log_p"] - log_q)).sum()),
        "energy_per_spin": {"ising_exact": float(p @ exact["energy"]), "rbm_exact": float(q @ exact["energy"]),
                            "rbm_gibbs": float(ising_energy_per_spin(spins).mean())},
        "abs_magnetization": {"ising_exact": float(p @ exact["abs_m"]), "rbm_exact": float(q @ exact["abs_m"]),
                              "rbm_gibbs": float(spins.mean(dim=(-2, -1)).abs().mean())},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m models.ising_rbm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/ising_rbm", help="output folder (rbm.json, kl.png)")
    parser.add_argument("--quick", action="store_true", help="2000 samples, 4 epochs, 8 hidden units (seconds)")
    parser.add_argument("--beta", type=float, default=0.4352, help="inverse temperature of the L=4 Ising data")
    parser.add_argument("--source", choices=("exact", "mc"), default="exact",
                        help="training data drawn from the exact Boltzmann distribution or by Monte Carlo")
    parser.add_argument("--n-samples", type=int, default=None, help="training samples (default 20000; quick 2000)")
    parser.add_argument("--n-hidden", type=int, default=None, help="hidden units (default 16; quick 8)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 40; quick 4)")
    parser.add_argument("--cd-k", type=int, default=10, help="k of the CD-k run (CD-1 and PCD-1 always run)")
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size")
    parser.add_argument("--lr", type=float, default=1e-2, help="learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random seed (data, initialisation, Gibbs chains)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    n_samples = args.n_samples or (2000 if args.quick else 20000)
    n_hidden = args.n_hidden or (8 if args.quick else 16)
    epochs = args.epochs if args.epochs is not None else (4 if args.quick else 40)
    n_gibbs = 1000 if args.quick else 10000
    print(f"ising_rbm, {'QUICK' if args.quick else 'full'} run: L=4, beta {args.beta}, {n_samples} {args.source} "
          f"samples, {n_hidden} hidden units, {epochs} epochs, CD-1 / CD-{args.cd_k} / PCD-1", flush=True)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    exact = exact_ising(args.beta)
    data = training_data(exact, args.beta, n_samples, args.source, args.seed)
    results = {"settings": {**vars(args), "n_samples": n_samples, "n_hidden": n_hidden, "epochs": epochs}, "runs": {}}
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, k in (("cd", 1), ("cd", args.cd_k), ("pcd", 1)):
        name = f"{method.upper()}-{k}"
        rbm = BernoulliRBM(L * L, n_hidden, seed=args.seed)
        kl0 = compare(rbm, exact, 10, args.seed)["kl_exact_to_rbm"]
        history = train_rbm(rbm, data, method=method, k=k, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed, progress=not args.no_progress,
                            on_epoch=lambda e, m: {"kl_exact_to_rbm": compare(m, exact, 10, args.seed)
                                                   ["kl_exact_to_rbm"]})
        final = compare(rbm, exact, n_gibbs, args.seed + 1)
        results["runs"][name] = {"kl_initial": kl0, **final, "history": history}
        ax.plot([0] + history["epoch"], [kl0] + history["kl_exact_to_rbm"], "o-", ms=3, label=name)
    p = exact["log_p"].exp()
    entropy = float(-(p * exact["log_p"]).sum())
    results["ising_entropy_nats"] = entropy
    results["seconds"] = time.perf_counter() - start
    ax.set(xlabel="epoch", ylabel="KL(p_Ising || p_RBM) [nats]", yscale="log",
           title=f"RBM ({n_hidden} hidden) on L=4 Ising, beta={args.beta}")
    ax.legend()
    png = save_figure(fig, os.path.join(args.out, "kl.png"), args.quick, dpi=110)
    path = os.path.join(args.out, "rbm.json")
    write_json(path, results)
    for name, run in results["runs"].items():
        e, m = run["energy_per_spin"], run["abs_magnetization"]
        print(f"{name}: KL(p_Ising || p_RBM) {run['kl_initial']:.4g} -> {run['kl_exact_to_rbm']:.4g} nats; "
              f"energy per spin {e['rbm_exact']:.4f} (exact Ising {e['ising_exact']:.4f}), "
              f"|m| {m['rbm_exact']:.4f} (exact {m['ising_exact']:.4f})")
    print(f"wrote {path} and {png}")
    return results


if __name__ == "__main__":
    main()
