"""Training loop of Shukla & Thakur Sec. II F: Adam, mini-batches of 10, 20% validation split, L1 on the weights.

The learning rate is constant (the paper's Keras setting) unless ``final_lr`` is given: then epoch ``e`` of ``E``
runs at ``final_lr + (lr - final_lr) (1 + cos(pi e / E)) / 2`` (cosine decay; a function of the epoch index only,
so resuming from a checkpoint is exact).

``fit`` minimises ``loss_fn(model(x), y) + l1 * sum |W|`` over the trainable weights, shuffling the training part
every epoch, and records per epoch the mean training data loss (over the epoch's batches, as Keras reports it),
the validation data loss after the epoch and the L1 penalty. With a ``checkpoint`` path it saves model, optimiser
and history atomically after every epoch and resumes from that file when it exists. The validation rows are a
seeded random 20% of the data (Keras takes the last 20%; Monte Carlo data are ordered in time, so a random split
avoids a validation set of correlated neighbours).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ...atomic import save_atomic
from .networks import l1_penalty


@dataclass
class TrainConfig:
    """Hyper-parameters (paper: 4000 epochs, batch 10, 20% validation, Adam; ``l1`` and ``lr`` are not given).
    ``final_lr``: ``None`` for a constant learning rate, else the end point of a cosine decay from ``lr``."""

    epochs: int = 10
    batch_size: int = 10
    lr: float = 1e-3
    l1: float = 1e-5
    val_fraction: float = 0.2
    seed: int = 0
    final_lr: float | None = None

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based)."""
        if self.final_lr is None:
            return self.lr
        return self.final_lr + (self.lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.lr <= 0 or self.l1 < 0:
            raise ValueError(f"lr must be > 0 and l1 >= 0, got lr={self.lr!r}, l1={self.l1!r}")
        if self.final_lr is not None and not 0 < self.final_lr <= self.lr:
            raise ValueError(f"final_lr must be None or in (0, lr], got {self.final_lr!r}")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of ``range(n)`` into (train, validation) index tensors."""
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise ValueError(f"need at least 2 samples to split off a validation set, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> float:
    """Mean data loss of ``model`` on ``(x, y)`` (evaluated in chunks; exact mean for per-element losses)."""
    total, count = 0.0, 0
    for start in range(0, x.shape[0], chunk):
        xb, yb = x[start:start + chunk], y[start:start + chunk]
        total += float(loss_fn(model(xb), yb)) * xb.shape[0]
        count += xb.shape[0]
    return total / count


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, config: TrainConfig,
        checkpoint: str | None = None, desc: str = "train", progress: bool = True) -> dict:
    """Train ``model`` on inputs ``x`` ``(N, n_in)`` and targets ``y`` ``(N, ...)``; returns the history dict
    ``{"train_loss": [...], "val_loss": [...], "l1_penalty": [...], "config": {...}}`` (one entry per epoch).

    A model without trainable parameters (Model 3) is only evaluated: one entry, ``epochs_trained == 0``.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    train_idx, val_idx = split_indices(x.shape[0], config.val_fraction, config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    history = {"train_loss": [], "val_loss": [], "l1_penalty": [], "lr": [], "config": asdict(config),
               "epochs_trained": 0, "n_train": len(train_idx), "n_val": len(val_idx)}
    if not params:
        model.eval()
        history["train_loss"].append(evaluate(model, loss_fn, x[train_idx], y[train_idx]))
        history["val_loss"].append(evaluate(model, loss_fn, x[val_idx], y[val_idx]))
        history["l1_penalty"].append(0.0)
        return history
    optimizer = torch.optim.Adam(params, lr=config.lr, fused=True)
    # d(l1 * sum |W|)/dW = l1 * sign(W), added to the gradients directly (cheaper than differentiating the sum).
    l1_weights = [p for name, p in model.named_parameters() if p.requires_grad and name.endswith("weight")]
    if checkpoint is not None and os.path.exists(checkpoint):
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
    x_train, y_train = x[train_idx], y[train_idx]
    epochs = range(history["epochs_trained"], config.epochs)
    bar = tqdm(epochs, desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        running, batches = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            data_loss = loss_fn(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            data_loss.backward()
            if config.l1:
                for weight in l1_weights:
                    weight.grad.add_(weight.detach().sign(), alpha=config.l1)
            optimizer.step()
            running += float(data_loss.detach())
            batches += 1
        model.eval()
        history["train_loss"].append(running / batches)
        history["val_loss"].append(evaluate(model, loss_fn, x[val_idx], y[val_idx]))
        history["l1_penalty"].append(float(config.l1 * l1_penalty(model).detach()))
        history.setdefault("lr", []).append(config.lr_at(epoch))
        history["epochs_trained"] = epoch + 1
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", val=f"{history['val_loss'][-1]:.4f}")
        if checkpoint is not None:
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history},
                        checkpoint)
    return history
