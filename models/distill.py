"""Hierarchical data distillation (paper Sec. IV) and classification by the distilled references.

    python -m models.distill --dataset digits|mnist|cifar10 [--data-dir DIR] [--quick] --out runs/distill

Trains the reference classifier (ResNet-18 for digits/MNIST, ResNet-50 for CIFAR-10), distils the training set
along the schedule of Fig. 7, classifies the test set by cosine similarity to the references of every level
(level 0 = all training images) and writes under ``--out``: ``results.json``, ``accuracy.md``,
``distilled.png`` (Fig. 9-like grid) and ``levels.pt`` (the distilled images). ``--bench-dir`` also writes the
stamped tables ``distill_<dataset>.json|md`` there.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from physkernels.atomic import write_json, write_text
from physkernels.benchmarks.harness import ResultTable, write_results
from physkernels.data import load
from physkernels.distill import (SCHEDULES, DistillConfig, check_class_sizes, check_mappings, classify_by_references,
                                 distill_hierarchy, embed_all, resnet18, resnet50, train_classifier)

# --quick: 16 images per class, a 3-level schedule, tiny nets, 2 steps per level (a smoke test of seconds)
QUICK = dict(steps=2, width=8, num_nets=1, lr=0.02, clf_width=8, epochs=1, per_class=16, schedule=(4, 2, 2))
# per dataset: image size/channels, classifier, and the full and --quick settings
PRESETS = {
    "digits": dict(size=28, channels=1, arch="resnet18", per_class=None, stem_stride=2,
                   full=dict(steps=(30, 40, 60, 80, 100), width=32, num_nets=4, lr=0.02, clf_width=16,
                             epochs=6),
                   quick=QUICK),
    "mnist": dict(size=28, channels=1, arch="resnet18", per_class=6000, stem_stride=1,
                  full=dict(steps=(200, 300, 400, 500, 500), width=128, num_nets=8, lr=0.02, clf_width=64,
                            epochs=10),
                  quick=QUICK),
    "cifar10": dict(size=32, channels=3, arch="resnet50", per_class=5000, stem_stride=1,
                    full=dict(steps=(200, 300, 400, 500, 500), width=128, num_nets=8, lr=0.02, clf_width=64,
                              epochs=30),
                    quick=QUICK),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m models.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits",
                   help="digits: sklearn's bundled set (offline); mnist / cifar10 need --data-dir")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST idx / CIFAR-10 python files")
    p.add_argument("--quick", action="store_true", help="tiny nets and 2 steps per level (smoke test)")
    p.add_argument("--out", default="runs/distill", help="output folder (JSON, PNG, checkpoints)")
    p.add_argument("--schedule", default=None, help="k-to-1 mappings, e.g. 10,6,5,5,4 (default: per dataset)")
    p.add_argument("--steps", default=None, help="Adam steps per level: one int or one per level (comma list)")
    p.add_argument("--width", type=int, default=None, help="embedding-net channels (paper: 128)")
    p.add_argument("--num-nets", type=int, default=None, help="random embedding nets per level")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate of the distillation (default: per dataset)")
    p.add_argument("--lam", type=float, default=19.0, help="lambda of Eq. 5")
    p.add_argument("--loss", choices=("eq5", "arcface"), default="eq5",
                   help="eq5: the paper's Eq. 5; arcface: the additive-angular-margin variant")
    p.add_argument("--per-class", type=int, default=None, help="cap of training images per class (D0)")
    p.add_argument("--classifier-width", type=int, default=None, help="ResNet first-stage channels (orig.: 64)")
    p.add_argument("--epochs", type=int, default=None, help="classifier training epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--bench-dir", default=None, help="also write stamped distill_<dataset>.json|md here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def cap_per_class(images, labels, per_class: int | None, seed: int):
    """Keep at most ``per_class`` randomly chosen images of every class (the paper's D0(10, 6000) for MNIST)."""
    if per_class is None:
        return images, labels
    gen = torch.Generator().manual_seed(seed)
    keep = [idx[torch.randperm(len(idx), generator=gen)[:per_class]]
            for idx in (torch.nonzero(labels == c).flatten() for c in labels.unique())]
    keep = torch.cat(keep).sort().values
    return images[keep], labels[keep]


def save_grid(path: str, rows: list[tuple[str, torch.Tensor]], classes, quick: bool = False) -> str:
    """Fig. 9-like grid: one row per level (``L0`` = a training sample), one column per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.15 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            img = imgs[c].clamp(0, 1).permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, labelpad=14, va="center")
            if r == 0:
                ax.set_title(str(classes[c]), fontsize=9)
    fig.tight_layout()
    from models.plots import save_figure

    return save_figure(fig, path, quick, dpi=110)


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = PRESETS[args.dataset]
    settings = dict(preset["quick" if args.quick else "full"])
    mappings = check_mappings(_int_list(args.schedule) if args.schedule
                              else settings.get("schedule", SCHEDULES[args.dataset]))
    steps = _int_list(args.steps) if args.steps else settings["steps"]
    if isinstance(steps, tuple) and len(steps) == 1:
        steps = steps[0]
    if isinstance(steps, tuple) and len(steps) != len(mappings):
        raise ValueError(f"--steps needs one value or one per level; the schedule {mappings} has {len(mappings)} "
                         f"levels, got {steps}")
    config = DistillConfig(steps=steps, lr=args.lr or settings["lr"], num_nets=args.num_nets or settings["num_nets"],
                           width=args.width or settings["width"], lam=args.lam, loss=args.loss)
    device = torch.device(args.device)
    progress = not args.no_progress
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    print(f"distill, {'QUICK' if args.quick else 'full'} run: {args.dataset}, schedule {mappings}, steps {steps}, "
          f"{config.num_nets} nets of width {config.width} per level", flush=True)

    train = load(args.dataset, "train", args.data_dir, size=preset["size"], channels=preset["channels"])
    test = load(args.dataset, "test", args.data_dir, size=preset["size"], channels=preset["channels"])
    per_class = args.per_class if args.per_class is not None else settings.get("per_class", preset["per_class"])
    x0, y0 = cap_per_class(train.images, train.labels, per_class, args.seed)
    num_classes = len(train.classes)
    check_class_sizes(y0, num_classes, mappings)  # fail before training the classifier
    load_before = os.getloadavg()

    start, cpu_start = time.perf_counter(), time.process_time()
    build = resnet18 if preset["arch"] == "resnet18" else resnet50
    model = build(preset["channels"], num_classes, args.classifier_width or settings["clf_width"],
                  preset["stem_stride"])
    clf_images, clf_labels = (x0, y0) if args.quick else (train.images, train.labels)
    clf_losses = train_classifier(model, clf_images, clf_labels, args.epochs or settings["epochs"],
                                  seed=args.seed, device=device, progress=progress)
    clf_seconds, clf_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    test_feat = embed_all(model.embed, test.images, device=device)
    with torch.no_grad():
        head_acc = float((model.head(test_feat.to(device)).argmax(1).cpu() == test.labels).float().mean())

    start, cpu_start = time.perf_counter(), time.process_time()
    levels = distill_hierarchy(x0.to(device), y0, num_classes, mappings, config, seed=args.seed, progress=progress)
    distill_seconds, distill_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    load_after = os.getloadavg()

    per_level = []
    for index, images, labels in [(0, x0, y0)] + [(lv.index, lv.images.cpu(), lv.labels) for lv in levels]:
        pred = classify_by_references(test_feat, embed_all(model.embed, images, device=device), labels, num_classes)
        lv = levels[index - 1] if index else None
        per_level.append(dict(level=f"D{index}", per_class=int(len(labels) // num_classes),
                              accuracy=float((pred == test.labels).float().mean()),
                              seconds=round(lv.seconds, 2) if lv else None,
                              loss_first=lv.loss_first if lv else None, loss_last=lv.loss_last if lv else None))

    torch.save({"mappings": mappings, "levels": [lv.images.cpu() for lv in levels],
                "labels": [lv.labels for lv in levels]}, os.path.join(args.out, "levels.pt.tmp"))
    os.replace(os.path.join(args.out, "levels.pt.tmp"), os.path.join(args.out, "levels.pt"))
    first_of_class = torch.stack([torch.nonzero(y0 == c)[0, 0] for c in range(num_classes)])
    save_grid(os.path.join(args.out, "distilled.png"),
              [("L0", x0[first_of_class])] + [(f"L{lv.index}", lv.images[:num_classes].cpu()) for lv in levels],
              train.classes, quick=args.quick)

    results = dict(dataset=args.dataset, quick=args.quick, mappings=list(mappings), config=vars(config),
                   train_images=len(y0), test_images=len(test.labels), device=str(device),
                   classifier=dict(arch=preset["arch"], width=model.stem[0].out_channels, epochs=len(clf_losses),
                                   final_loss=clf_losses[-1], head_test_accuracy=head_acc, seconds=clf_seconds,
                                   cpu_seconds=clf_cpu),
                   levels=per_level, distill_seconds=distill_seconds, distill_cpu_seconds=distill_cpu,
                   total_seconds=clf_seconds + distill_seconds, load_average=dict(before=load_before,
                                                                                   after=load_after))
    table = ResultTable(name=f"distill_{args.dataset}", title=f"Classification by distilled references "
                        f"({args.dataset}, {len(test.labels)} held-out images)",
                        columns=["level", "per_class", "accuracy", "seconds", "loss_first", "loss_last"],
                        rows=per_level,
                        notes=[f"schedule {'-'.join(map(str, mappings))} (k-to-1 per level); D0 = all "
                               f"{len(y0)} training images as references",
                               f"classifier {preset['arch']} width {model.stem[0].out_channels}: head accuracy "
                               f"{head_acc:.4f}, trained in {clf_seconds:.0f} s wall ({clf_cpu:.0f} s CPU)",
                               f"distillation: loss {config.loss}, lambda {config.lam}, steps {config.steps}, "
                               f"embedding width {config.width}, {config.num_nets} random nets per level, "
                               f"{distill_seconds:.0f} s wall ({distill_cpu:.0f} s CPU) on {device}",
                               f"1-min load average before/after: {load_before[0]:.1f}/{load_after[0]:.1f} "
                               f"on {os.cpu_count()} cores (CPU seconds sum all threads; other jobs inflate wall time)",
                               f"total wall {clf_seconds + distill_seconds:.0f} s"])
    write_json(os.path.join(args.out, "results.json"), results, indent=2)
    write_text(os.path.join(args.out, "accuracy.md"), table.markdown() + "\n")
    if args.bench_dir:
        write_results([table], args.bench_dir, f"distill_{args.dataset}")
    print(table.markdown())
    return results


if __name__ == "__main__":
    main()
