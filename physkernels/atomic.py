"""Atomic file writes: the content goes to a temporary file in the target's folder, is flushed and fsynced, then
``os.replace`` puts it in place, so a reader (or a run resumed after a crash or kill -9) sees either the old file or
the complete new one, never a half-written file. Parent folders are created."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

__all__ = ["write_text", "write_json", "save_atomic"]


def _replace_with(path: str, write, mode: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _replace_with(path, lambda f: f.write(text), "w")


def write_json(path: str, obj: Any, indent: int = 1) -> None:
    """``json.dump(obj)`` to ``path`` atomically (objects JSON cannot encode are written as ``str(obj)``)."""
    _replace_with(path, lambda f: json.dump(obj, f, indent=indent, default=str), "w")


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints)."""
    _replace_with(path, lambda f: torch.save(obj, f), "wb")
