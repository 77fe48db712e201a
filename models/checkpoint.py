"""Checkpoints (written with :func:`physkernels.atomic.save_atomic`) and the random-number state needed for an exact
resume."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The states of python's, numpy's and torch's (CPU and every CUDA device) generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load(path: str) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none. Our own files: full unpickling is needed for the
    python/numpy RNG states."""
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
