"""Train paper models m times each and report a +- sigma (Eq. 10-11), with plots as the MPO paper's Fig. 2 and 3.

    python -m models.train --model fc2 fc2-mpo --bond-dim 2 4 8 16 --dataset digits --runs 5
    python -m models.train --model resnet20 resnet20-mpo resnet32 resnet32-mpo --dataset cifar10 --data-dir DIR
    torchrun --nproc_per_node 2 -m models.train --model fc2-mpo --bond-dim 8 --runs 1     # DDP (gloo on CPU)

Writes under ``--out`` (default runs/<first model>): results.json (every run, every summary, machine),
accuracy_vs_bond_dim.png / accuracy_vs_depth.png when the results have more than one D / depth, and
checkpoints/<model>[-D<d>]-seed<s>.pt. Rerunning the same command resumes every unfinished run exactly where its
last checkpoint left it and skips finished ones (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import torch
import torch.distributed as dist

import physkernels
from physkernels.atomic import write_json
from physkernels.benchmarks.harness import machine_info
from physkernels.data import DATASETS, load

from .presets import PRESETS
from .registry import MODELS, spec
from .stats import mean_sigma
from .trainer import CheckpointMismatchError, RunConfig, train_run

STOPPED_EXIT_CODE = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m models.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", required=True, metavar="NAME", help=f"one or more of: {', '.join(MODELS)}")
    p.add_argument("--bond-dim", nargs="+", type=int, default=None, metavar="D",
                   help="bond dimension(s) D of the -mpo models (default: the paper's); dense models ignore it")
    p.add_argument("--dataset", default="digits", choices=DATASETS,
                   help="digits: sklearn's bundled set (offline); mnist / cifar10 need --data-dir")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST idx / CIFAR-10 python files")
    p.add_argument("--runs", type=int, default=1, help="independent runs m per model (seeds seed..seed+m-1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run (run i uses seed + i)")
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's for this data set")
    p.add_argument("--lr", type=float, default=None, help="SGD learning rate (default: preset's)")
    p.add_argument("--momentum", type=float, default=None, help="SGD momentum (default: preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch size (default: preset's)")
    p.add_argument("--l2", type=float, default=None, help="alpha of Eq. 7")
    p.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradient norm (default: preset's)")
    p.add_argument("--schedule", default=None, choices=("exp", "step", "cosine"),
                   help="per-epoch learning-rate schedule (default: preset's)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--backend", default="auto", choices=("auto",) + physkernels.BACKENDS,
                   help="physkernels backend (auto = the fastest on the device)")
    p.add_argument("--autotune", action="store_true",
                   help="choose MPO contraction plans and GPU kernel configurations by timing them on their first "
                        "call (faster; the pick can differ between runs, and then results differ in rounding). "
                        "Default: the deterministic picks, so a run and its resumption are bitwise reproducible")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default; 1 is fastest on a busy shared machine)")
    p.add_argument("--out", default=None, help="output folder (default runs/<first model>)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                   help="also checkpoint every STEPS optimizer steps (always at the end of each epoch)")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start every run anew")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: <= 256 train / 128 test images, 1 epoch unless --epochs")
    p.add_argument("--stop-after-steps", type=int, default=0, metavar="N",
                   help="stop each run after N steps as if killed (checkpoint kept; rerun to resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for name in args.model:
        if name not in MODELS:
            p.error(f"--model: unknown model {name!r}; available: {', '.join(MODELS)}")
    if args.runs < 1:
        p.error(f"--runs must be >= 1, got {args.runs}")
    if args.bond_dim is not None and min(args.bond_dim) < 1:
        p.error(f"--bond-dim values must be >= 1, got {args.bond_dim}")
    if args.dataset != "digits" and not args.data_dir:
        p.error(f"--data-dir is required for --dataset {args.dataset} (nothing is downloaded)")
    return args


def load_data(dataset: str, data_dir: str | None, input_shape: tuple[int, int, int], normalize: bool,
              quick: bool) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Train and test (images, labels) resized / channel-matched to ``input_shape`` (C, H, W)."""
    c, h, w = input_shape
    sets = [load(dataset, split, data_dir, size=(h, w), channels=c) for split in ("train", "test")]
    train, test = [(s.images, s.labels) for s in sets]
    if quick:
        keep = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(0))[:256]
        train = (train[0][keep], train[1][keep])
        test = (test[0][:128], test[1][:128])
    if normalize:
        mean = train[0].mean(dim=(0, 2, 3), keepdim=True)
        std = train[0].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        train, test = ((train[0] - mean) / std, train[1]), ((test[0] - mean) / std, test[1])
    return train, test


def _init_distributed(device: str) -> str:
    """Join the torchrun group if there is one; returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: process LOCAL_RANK={local_rank} needs GPU {local_rank}, but this "
                             f"machine has {torch.cuda.device_count()}; start at most one process per GPU "
                             f"(torchrun --nproc_per_node) or train on --device cpu")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    physkernels.set_backend(args.backend)
    physkernels.set_autotune(args.autotune)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    device = _init_distributed(device)
    main_rank = not dist.is_initialized() or dist.get_rank() == 0
    out = args.out or os.path.join("runs", args.model[0])
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)

    summaries, runs, data_cache, stopped = [], [], {}, False
    for name in args.model:
        model = spec(name)
        preset = PRESETS[model.preset].for_dataset(args.dataset).with_overrides(
            lr=args.lr, momentum=args.momentum, batch_size=args.batch_size, l2=args.l2,
            clip_grad_norm=args.clip_grad_norm, schedule=args.schedule)
        epochs = args.epochs or (1 if args.quick else preset.epochs[args.dataset])
        key = (model.input_shape, preset.normalize)
        if key not in data_cache:
            data_cache[key] = load_data(args.dataset, args.data_dir, model.input_shape, preset.normalize, args.quick)
        train, test = data_cache[key]
        for bond_dim in (args.bond_dim or [None]) if model.mpo else [None]:
            tag = name + (f"-D{bond_dim}" if bond_dim else "")
            accuracies, records = [], []
            for i in range(args.runs):
                ckpt = os.path.join(out, "checkpoints", f"{tag}-seed{args.seed + i}.pt")
                if args.fresh and main_rank and os.path.exists(ckpt):
                    os.remove(ckpt)
                if dist.is_initialized():
                    dist.barrier()
                cfg = RunConfig(model=name, preset=preset, epochs=epochs, seed=args.seed + i, bond_dim=bond_dim,
                                device=device, checkpoint_path=ckpt, checkpoint_every=args.checkpoint_every,
                                stop_after_steps=args.stop_after_steps, progress=not args.no_progress)
                try:
                    record = train_run(cfg, train, test)
                except CheckpointMismatchError as error:  # the message says what to do; no traceback
                    print(f"error: {error}", file=sys.stderr)
                    return 2
                if record is None:
                    stopped = True
                    continue
                records.append(record)
                accuracies.append(record["test_accuracy"])
                if main_rank:
                    print(f"{tag} seed {args.seed + i}: test accuracy {record['test_accuracy']:.2f}% "
                          f"({record['seconds']:.1f} s)", flush=True)
            runs += records
            if accuracies:
                mean, sigma = mean_sigma(accuracies)
                summaries.append({
                    "model": name, "bond_dim": bond_dim, "runs": len(accuracies), "accuracies": accuracies,
                    "mean": mean, "sigma": sigma, "parameters": records[0]["parameters"], "rho": records[0]["rho"],
                    "seconds": sum(r["seconds"] for r in records), "mpo": model.mpo, "twin": model.twin,
                    "family": model.family, "depth": model.depth, "epochs": epochs})
    if main_rank:
        from .plots import accuracy_vs_bond_dim, accuracy_vs_depth

        title = f"{args.dataset}, {args.runs} run(s) each"
        plots = [accuracy_vs_bond_dim(summaries, os.path.join(out, "accuracy_vs_bond_dim.png"), title, args.quick)
                 if len({s["bond_dim"] for s in summaries if s["mpo"]}) > 1 else None,
                 accuracy_vs_depth(summaries, os.path.join(out, "accuracy_vs_depth.png"), title, args.quick)]
        write_json(os.path.join(out, "results.json"),
                   {"machine": machine_info(), "args": vars(args), "device": device,
                    "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                    "summaries": summaries, "runs": runs, "plots": [p for p in plots if p]}, indent=2)
        for s in summaries:
            d = f" D={s['bond_dim']}" if s["bond_dim"] else ""
            rho = f", rho={s['rho']:.4g}" if s["mpo"] else ""
            print(f"{s['model']}{d}: {s['mean']:.2f} +- {s['sigma']:.2f} % over {s['runs']} run(s) "
                  f"[{s['parameters']} parameters{rho}]")
        if stopped:
            print(f"stopped after --stop-after-steps {args.stop_after_steps}; rerun the same command to resume",
                  file=sys.stderr)
    if dist.is_initialized():
        gc.collect()  # free the runs' DDP wrappers (they hold the group) while the group and interpreter are alive
        dist.barrier()  # and no rank tears its connections down while another is still writing or talking
        dist.destroy_process_group()
    return STOPPED_EXIT_CODE if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
