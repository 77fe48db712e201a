"""``load(name, split, ...)``: the data sets of the drivers as tensors, with optional resizing and channel repeat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .formats import DataFormatError, find_file, read_cifar10_batch, read_idx

DATASETS = ("digits", "mnist", "cifar10")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageSet:
    """Images (N, C, H, W) float32 in [0, 1] and labels (N,) int64 with their class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str

    def __len__(self) -> int:
        return self.labels.shape[0]

    def dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.images, self.labels)


def _digits(split: str, seed: int = 0, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1797 8x8 digits (values 0..16), split by a per-class shuffle with a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the offline digits dataset needs scikit-learn: pip install 'physkernels[models]' "
                          "(or pip install scikit-learn)") from exc

    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: int(round(test_fraction * len(members)))]] = True
    keep = test if split == "test" else ~test
    return images[keep][:, None], labels[keep]


def _mnist(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    subdirs = ["", "MNIST/raw", "raw", "mnist"]
    images = read_idx(find_file(data_dir, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], subdirs))
    labels = read_idx(find_file(data_dir, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], subdirs))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataFormatError(f"MNIST {split}: images {images.shape} and labels {labels.shape} do not match")
    return images.astype(np.float32)[:, None] / 255.0, labels.astype(np.int64)


def _cifar10(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [read_cifar10_batch(find_file(data_dir, [n], ["cifar-10-batches-py", ""])) for n in names]
    images = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    return images, np.concatenate([p[1] for p in parts])


def load(name: str, split: str = "train", data_dir: str | None = None, size: int | tuple[int, int] | None = None,
         channels: int | None = None) -> ImageSet:
    """Load ``name`` (``digits``, ``mnist``, ``cifar10``) ``split`` (``train``/``test``) as an :class:`ImageSet`.

    ``size``: resize to ``(size, size)`` (or ``(h, w)``) by bilinear interpolation (antialiased when shrinking).
    ``channels``: 1 or 3; a grey set is repeated to 3 channels, a colour set averaged to 1.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name != "digits" and not data_dir:
        raise ValueError(f"data_dir is required for {name!r} (data cannot be downloaded); "
                         "use name='digits' for the bundled offline set")
    if name == "digits":
        images, labels = _digits(split)
        classes = tuple(str(i) for i in range(10))
    elif name == "mnist":
        images, labels = _mnist(data_dir, split)
        classes = tuple(str(i) for i in range(10))
    else:
        images, labels = _cifar10(data_dir, split)
        classes = CIFAR10_CLASSES
    x = torch.from_numpy(np.ascontiguousarray(images))
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError(f"size must be a positive int or (h, w), got {size!r}")
        if tuple(x.shape[-2:]) != hw:
            shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
            x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=shrink).clamp_(0, 1)
    if channels is not None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif channels == 1 and x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
    return ImageSet(x.contiguous(), torch.from_numpy(labels), classes, name)
