"""One training run: SGD on cross entropy + alpha/2 sum|w|^2 (Eq. 7), with atomic checkpoints and exact resume.

Exact resume: a checkpoint holds the model, optimizer and scheduler states, the python/numpy/torch RNG states
(of every DDP rank), the epoch and the step inside it. The data order of epoch e is a permutation drawn from a
generator seeded by (seed, e), so a resumed run replays the same batches; it ends with bit-identical weights to an
uninterrupted run with the same seed (tests/test_models.py checks this).

DDP (``torchrun``): every rank sees the same global batch of ``batch_size`` samples and takes the slice
``rank::world``; its loss is scaled by world/len(batch) on the summed cross entropy, so DDP's gradient average
is exactly the gradient of the global batch mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from physkernels.atomic import save_atomic

from . import checkpoint
from .accounting import l2_penalty
from .presets import TrainPreset
from .registry import spec as model_spec


@dataclass
class RunConfig:
    model: str
    preset: TrainPreset
    epochs: int
    seed: int = 0
    bond_dim: int | None = None
    device: str = "cpu"
    checkpoint_path: str | None = None
    checkpoint_every: int = 0      # steps between checkpoints (0: only at the end of each epoch)
    stop_after_steps: int = 0      # stop (as if killed) after this many steps in total; 0 = never
    progress: bool = True
    eval_batch_size: int = 500


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of ``epoch``: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: str,
             batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].to(device)
        correct += (model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    model.train(was_training)
    return 100.0 * correct / max(len(labels), 1)


def _gather_rng() -> list:
    rank, world = _world()
    state = checkpoint.rng_state()
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states


class CheckpointMismatchError(ValueError):
    """An existing checkpoint belongs to another run or other settings: resuming it would mix two experiments."""


def train_run(cfg: RunConfig, train: tuple[torch.Tensor, torch.Tensor],
              test: tuple[torch.Tensor, torch.Tensor]) -> dict | None:
    """Train ``cfg.model`` once; returns the run's record, or None if stopped by ``stop_after_steps``.

    ``train``/``test`` are (images (N, C, H, W), labels (N,)) already shaped for the model.
    """
    rank, world = _world()
    main = rank == 0
    checkpoint.seed_everything(cfg.seed)
    model = model_spec(cfg.model).build(cfg.bond_dim).to(cfg.device)
    net = model
    if world > 1:  # same initial weights everywhere (DDP also broadcasts rank 0's); own dropout stream per rank
        checkpoint.seed_everything(cfg.seed + 7919 * rank)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.device(cfg.device).index] if cfg.device.startswith("cuda") else None)
    optimizer = cfg.preset.make_optimizer(model.parameters())
    scheduler = cfg.preset.make_scheduler(optimizer, cfg.epochs)
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "elapsed": 0.0, "last_loss": None}

    saved = checkpoint.load(cfg.checkpoint_path) if cfg.checkpoint_path else None
    if saved is not None:
        if saved["model_name"] != cfg.model or saved["seed"] != cfg.seed or saved["bond_dim"] != cfg.bond_dim:
            raise CheckpointMismatchError(f"checkpoint {cfg.checkpoint_path} belongs to another run "
                             f"({saved['model_name']}, seed {saved['seed']}, D={saved['bond_dim']})")
        if saved.get("preset") != asdict(cfg.preset) or saved.get("epochs") != cfg.epochs:
            raise CheckpointMismatchError(f"checkpoint {cfg.checkpoint_path} was trained with other settings "
                             f"({saved.get('preset')}, {saved.get('epochs')} epochs); use another --out or --fresh")
        if saved.get("result") is not None:
            return saved["result"]
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        rngs = saved["rng"]
        checkpoint.set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])

    def save(result: dict | None = None) -> None:
        if not cfg.checkpoint_path:
            return
        rngs = _gather_rng()
        if main:
            save_atomic({
                "model_name": cfg.model, "seed": cfg.seed, "bond_dim": cfg.bond_dim, "preset": asdict(cfg.preset),
                "epochs": cfg.epochs, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "state": state,
                "rng": rngs, "result": result}, cfg.checkpoint_path)
        if world > 1:
            dist.barrier()

    images, labels = train
    n, batch = len(labels), cfg.preset.batch_size
    steps_per_epoch = math.ceil(n / batch)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state["global_step"], disable=not (cfg.progress and main),
               desc=f"{cfg.model}" + (f" D={cfg.bond_dim}" if cfg.bond_dim else "") + f" seed={cfg.seed}",
               leave=False, dynamic_ncols=True)
    started = time.perf_counter() - state["elapsed"]
    net.train()
    while state["epoch"] < cfg.epochs:
        order = epoch_permutation(cfg.seed, state["epoch"], n)
        for step in range(state["step_in_epoch"], steps_per_epoch):
            index = order[step * batch:(step + 1) * batch]
            local = index[rank::world]
            x, y = images[local].to(cfg.device), labels[local].to(cfg.device)
            ce = F.cross_entropy(net(x), y, reduction="sum") * (world / len(index))
            loss = ce + cfg.preset.l2 * l2_penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.preset.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.preset.clip_grad_norm)
            optimizer.step()
            state["step_in_epoch"] = step + 1
            state["global_step"] += 1
            bar.update(1)
            state["last_loss"] = loss.item()
            if not math.isfinite(state["last_loss"]):
                raise FloatingPointError(f"{cfg.model}: loss became {state['last_loss']} at step "
                                         f"{state['global_step']}; lower the learning rate (--lr)")
            state["elapsed"] = time.perf_counter() - started
            if cfg.stop_after_steps and state["global_step"] >= cfg.stop_after_steps:
                save()
                bar.close()
                return None
            if cfg.checkpoint_every and state["global_step"] % cfg.checkpoint_every == 0:
                save()
        scheduler.step()
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        accuracy = evaluate(model, *test, cfg.device, cfg.eval_batch_size)
        state["history"].append({"epoch": state["epoch"], "loss": state["last_loss"], "test_accuracy": accuracy})
        bar.set_postfix(loss=f"{state['last_loss']:.3f}", test_acc=f"{accuracy:.2f}")
        state["elapsed"] = time.perf_counter() - started
        save()
    bar.close()
    report = model.compression() if hasattr(model, "compression") else None
    result = {
        "model": cfg.model, "bond_dim": cfg.bond_dim, "seed": cfg.seed, "epochs": cfg.epochs,
        "test_accuracy": state["history"][-1]["test_accuracy"] if state["history"] else evaluate(
            model, *test, cfg.device, cfg.eval_batch_size),
        "best_test_accuracy": max((h["test_accuracy"] for h in state["history"]), default=None),
        "history": state["history"], "seconds": state["elapsed"], "world_size": world,
        "parameters": sum(p.numel() for p in model.parameters()),
        "rho": report.rho if report else None, "preset": asdict(cfg.preset)}
    save(result)
    return result
