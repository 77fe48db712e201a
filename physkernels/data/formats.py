"""Readers for the MNIST idx format and CIFAR-10's python batches, with clear errors on damaged files."""

from __future__ import annotations

import gzip
import io
import os
import pickle

import numpy as np

# idx type codes -> numpy dtypes (big-endian), per the MNIST format description.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataFormatError(ValueError):
    """A data file is missing, truncated or not in the expected format."""


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc
    return raw


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed): magic 0x0000TTNN, NN big-endian int32 sizes, then the data."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFormatError(f"{path} is not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataFormatError(f"{path}: truncated idx header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFormatError(f"{path}: idx header promises {expected} data bytes for shape {shape}, "
                              f"file has {len(raw) - header} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts, lists, bytes, numpy arrays) and refuses anything else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar10_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    raw = _read_bytes(path)
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many kinds on damaged input
        raise DataFormatError(f"{path} is not a readable CIFAR-10 batch: {exc}") from exc
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: expected a dict, found {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataFormatError(f"{path}: missing 'data' or 'labels'")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DataFormatError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(f"{path}: labels outside 0..9")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


def find_file(data_dir: str, names: list[str], subdirs: list[str]) -> str:
    """First existing ``data_dir/subdir/name`` (also with .gz); DataFormatError listing where it looked."""
    tried = []
    for sub in subdirs:
        for name in names:
            for candidate in (name, name + ".gz"):
                path = os.path.join(data_dir, sub, candidate)
                tried.append(path)
                if os.path.isfile(path):
                    return path
    raise DataFormatError(f"none of these files exist: {tried[:4]}{' ...' if len(tried) > 4 else ''}")
