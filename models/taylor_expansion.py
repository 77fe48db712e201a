"""Direct Taylor expansion classifier (TaylorNet paper, Sec. III, Eq. 3): Fig. 2, Fig. 3, Fig. 13 and pruning.

One TaylorLinear layer maps an image x (n pixels in [0, 1]) to 10 class scores through all monomials of x up to
a given order, trained with cross-entropy. The driver

* trains one model per order (Fig. 2: test accuracy vs order),
* analyses the quadratic weights of the highest-order model against pixel distance (Fig. 3) and per class
  (Fig. 13),
* prunes that model to the largest-|W| fractions (paper: unchanged at 50%, -0.83 points at 30%, ~85% at 10%) and
  reports test accuracy right after pruning and after fine-tuning with the mask held.

Data: sklearn's bundled digits (offline; 8x8, or 7x7 by bilinear resizing as the paper does for MNIST), or real
MNIST idx files (``--dataset mnist --data-dir DIR``) resized to 7x7. Outputs under ``--out``: results.json,
fig2_accuracy_vs_order.png, fig3_quadratic_weights.png, fig13_class_maps.png, pruning.png.

    python -m models.taylor_expansion --quick
    python -m models.taylor_expansion --size 7 --orders 1 2 3 4 --epochs 30
    python -m models.taylor_expansion --dataset mnist --data-dir ~/data --epochs 10
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import physkernels  # noqa: E402
from physkernels.atomic import write_json  # noqa: E402
from models.plots import save_figure  # noqa: E402
from physkernels.nn import TaylorLinear  # noqa: E402
from physkernels.taylor import quadratic_weights_by_distance  # noqa: E402

N_CLASSES = 10


# ---------------------------------------------------------------- data


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) images in [0, 1] -> (N, size, size) by bilinear interpolation (antialiased when shrinking)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images[:, None].float(), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=True)
    return out[:, 0].clamp(0, 1)


def load_digits_split(size: int, seed: int, test_fraction: float = 0.2):
    """sklearn digits (1797 8x8 images, 0..16) scaled to [0, 1], resized, stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed,
                                           stratify=digits.target)
    images = resize(images, size)
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def load_dataset(args):
    """(train, test) pairs of (N, size, size) images in [0, 1] and labels; MNIST via physkernels.data."""
    if args.dataset == "digits":
        return load_digits_split(args.size, args.seed)
    from physkernels.data import load

    sets = [load("mnist", split, data_dir=args.data_dir, size=args.size) for split in ("train", "test")]
    return tuple((s.images[:, 0], s.labels) for s in sets)


# ---------------------------------------------------------------- training


@torch.no_grad()
def accuracy(model: TaylorLinear, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        scores = model(images[start:start + batch_size].flatten(1))
        correct += (scores.argmax(1) == labels[start:start + batch_size]).sum().item()
    return correct / max(len(labels), 1)


def train(model: TaylorLinear, train_set, epochs: int, batch_size: int, lr: float, seed: int, desc: str) -> list:
    """Adam on cross-entropy; returns the per-epoch mean training loss."""
    images, labels = train_set
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        model.train()
        order = torch.randperm(len(labels), generator=gen)
        total = 0.0
        for start in range(0, len(labels), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[idx].flatten(1)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(labels))
    return losses


# ---------------------------------------------------------------- plots


def plot_accuracy_vs_order(results: list, path: str, title: str, quick: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot([r["order"] for r in results], [100 * r["test_accuracy"] for r in results], "o-")
    for r in results:
        ax.annotate(f"{r['n_terms']:,} terms", (r["order"], 100 * r["test_accuracy"]), textcoords="offset points",
                    xytext=(0, -14), ha="center", fontsize=7)
    ax.set_xlabel("expansion order n")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks([r["order"] for r in results])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, quick, dpi=130)


def plot_quadratic_stats(stats, path: str, quick: bool = False) -> None:
    levels = [f"L{k + 1}" for k in range(5)]
    colors = plt.cm.Blues(np.linspace(0.25, 1.0, 5))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    bottom = np.zeros(len(stats.distances))
    for k in range(5):
        a.bar(range(len(stats.distances)), stats.level_fraction_at_distance[k], bottom=bottom, color=colors[k],
              label=levels[k])
        bottom += stats.level_fraction_at_distance[k]
    ticks = range(0, len(stats.distances), max(1, len(stats.distances) // 10))
    a.set_xticks(list(ticks), [f"{stats.distances[i]:.1f}" for i in ticks])
    a.set_xlabel("pixel distance $d_{ij}$")
    a.set_ylabel("share of weights per level")
    a.set_title("(a) weight levels at each distance", fontsize=9)
    a.legend(fontsize=7, ncol=5, loc="upper center")
    for k in range(5):
        b.plot(stats.distances, stats.distance_fraction_of_level[k], "o-", ms=2, color=colors[k], label=levels[k])
    b.set_xlabel("pixel distance $d_{ij}$")
    b.set_ylabel("weight ratio of the level")
    b.set_title("(b) distance distribution of each level", fontsize=9)
    b.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, quick, dpi=130)


def plot_class_maps(stats, path: str, quick: bool = False) -> None:
    fig, axes = plt.subplots(2, 5, figsize=(13, 6.4))
    for c, ax in enumerate(axes.flat):
        if c >= stats.class_maps.shape[0]:
            ax.axis("off")
            continue
        ax.imshow(stats.class_maps[c] + 1, cmap="Greys", vmin=0, vmax=5, interpolation="nearest")
        counts = "/".join(str(int(v)) for v in stats.class_level_counts[c])
        ax.set_title(f"class {c}\nL1..L5: {counts}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Quadratic weights $W_{c, x_i x_j}$ by level (darker = larger), axes: pixel i, pixel j", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, quick, dpi=130)


def plot_pruning(pruning: list, base: float, path: str, quick: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    kept = [100 * p["kept_fraction"] for p in pruning]
    ax.plot(kept, [100 * p["accuracy_pruned"] for p in pruning], "o-", label="right after pruning")
    ax.plot(kept, [100 * p["accuracy_finetuned"] for p in pruning], "s-", label="after fine-tuning (mask held)")
    ax.axhline(100 * base, color="grey", ls="--", lw=1, label="unpruned")
    ax.set_xlabel("coefficients kept (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, quick, dpi=130)


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m models.taylor_expansion", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits",
                   help="digits: sklearn's bundled set (offline); mnist needs --data-dir")
    p.add_argument("--data-dir", help="folder with the MNIST idx(.gz) files (for --dataset mnist)")
    p.add_argument("--size", type=int, choices=(7, 8), default=7, help="image side after resizing (MNIST: 7)")
    p.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3, 4], help="Taylor orders to train (Fig. 2)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per order")
    p.add_argument("--batch-size", type=int, default=64, help="mini-batch size")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate")
    p.add_argument("--prune-fractions", type=float, nargs="*", default=[0.5, 0.3, 0.1],
                   help="shares of coefficients kept (largest |W|)")
    p.add_argument("--finetune-epochs", type=int, default=5, help="epochs of retraining after each pruning")
    p.add_argument("--backend", default="auto", help="physkernels backend (auto, cpp, reference, ...)")
    p.add_argument("--seed", type=int, default=0, help="random seed (data split, initialisation, batches)")
    p.add_argument("--out", default=os.path.join("runs", "taylor_expansion"), help="output folder (JSON + PNG)")
    p.add_argument("--quick", action="store_true", help="orders 1-2, 2 epochs, 400 training images: seconds")
    args = p.parse_args(argv)
    if args.dataset == "mnist":
        if not args.data_dir:
            p.error("--dataset mnist needs --data-dir")
        args.size = 7
    if args.quick:
        args.orders = [o for o in args.orders if o <= 2] or [1, 2]
        args.epochs, args.finetune_epochs = 2, 1
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    physkernels.set_backend(args.backend)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train_set, test_set = load_dataset(args)
    if args.quick:
        train_set = (train_set[0][:400], train_set[1][:400])
    n = args.size * args.size
    title = f"{args.dataset} {args.size}x{args.size}, {len(train_set[1])} train / {len(test_set[1])} test"
    print(f"taylor_expansion, {'QUICK' if args.quick else 'full'} run: {title}; orders {args.orders}, "
          f"{args.epochs} epochs; backend {physkernels.get_backend()}", flush=True)

    by_order, models = [], {}
    for order in tqdm(args.orders, desc="orders"):
        torch.manual_seed(args.seed + order)
        model = TaylorLinear(n, N_CLASSES, order)
        start = time.perf_counter()
        losses = train(model, train_set, args.epochs, args.batch_size, args.lr, args.seed, f"order {order}")
        by_order.append({"order": order, "n_terms": model.n_terms, "parameters": model.n_terms * N_CLASSES + 10,
                         "train_seconds": time.perf_counter() - start, "final_train_loss": losses[-1],
                         "train_accuracy": accuracy(model, *train_set), "test_accuracy": accuracy(model, *test_set)})
        models[order] = model
        tqdm.write(f"order {order}: {model.n_terms:,} terms, test accuracy {100 * by_order[-1]['test_accuracy']:.2f}%")
    plot_accuracy_vs_order(by_order, os.path.join(args.out, "fig2_accuracy_vs_order.png"), title, quick=args.quick)
    results = {"config": vars(args), "accuracy_vs_order": by_order}

    top = max(models)
    if top >= 2:
        stats = quadratic_weights_by_distance(models[top], (args.size, args.size))
        plot_quadratic_stats(stats, os.path.join(args.out, "fig3_quadratic_weights.png"), quick=args.quick)
        plot_class_maps(stats, os.path.join(args.out, "fig13_class_maps.png"), quick=args.quick)
        results["quadratic_weights"] = {"order": top, **stats.as_dict()}

    base = next(r["test_accuracy"] for r in by_order if r["order"] == top)
    pruning = []
    for fraction in tqdm(args.prune_fractions, desc="pruning"):
        model = copy.deepcopy(models[top])
        model.prune(fraction)
        pruned = accuracy(model, *test_set)
        train(model, train_set, args.finetune_epochs, args.batch_size, args.lr / 10, args.seed, f"finetune {fraction}")
        pruning.append({"kept_fraction": model.kept_fraction, "accuracy_pruned": pruned,
                        "accuracy_finetuned": accuracy(model, *test_set),
                        "zero_coefficients_held": bool((model.weight[~model.weight_mask] == 0).all())})
        tqdm.write(f"kept {100 * fraction:.0f}%: {100 * pruned:.2f}% pruned, "
                   f"{100 * pruning[-1]['accuracy_finetuned']:.2f}% fine-tuned (unpruned {100 * base:.2f}%)")
    if pruning:
        plot_pruning(pruning, base, os.path.join(args.out, "pruning.png"), quick=args.quick)
    results["pruning"] = {"order": top, "unpruned_test_accuracy": base, "runs": pruning}
    write_json(os.path.join(args.out, "results.json"), results, indent=2)
    print(f"wrote {args.out}/results.json and plots")
    return results


if __name__ == "__main__":
    main()
