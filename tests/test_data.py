"""Data loaders on tiny files written in the real formats, including damaged ones."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from physkernels.data import DataFormatError, load, read_idx


def _write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    raw = header + array.tobytes()
    with (gzip.open if gz else open)(f"{path}.gz" if gz else path, "wb") as f:
        f.write(raw)


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz=True)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return tmp_path


def test_mnist_round_trip_and_resize(mnist_dir):
    train = load("mnist", "train", data_dir=str(mnist_dir))
    assert train.images.shape == (12, 1, 28, 28) and train.images.dtype == torch.float32
    raw = read_idx(str(mnist_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"))
    assert torch.equal(train.images[:, 0], torch.from_numpy(raw.astype(np.float32) / 255))
    small = load("mnist", "test", data_dir=str(mnist_dir), size=7)
    assert small.images.shape == (5, 1, 7, 7)
    assert 0 <= small.images.min() and small.images.max() <= 1


def test_truncated_idx_is_a_clear_error(mnist_dir):
    path = mnist_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        load("mnist", "test", data_dir=str(mnist_dir))


def test_bad_magic_and_corrupt_gzip(tmp_path):
    bad = tmp_path / "x-idx"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataFormatError, match="bad magic"):
        read_idx(str(bad))
    broken = tmp_path / "y.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(DataFormatError, match="cannot read"):
        read_idx(str(broken))


def _write_cifar(folder, name, n, seed):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
    with open(folder / name, "wb") as f:
        pickle.dump(batch, f)
    return batch


def test_cifar10_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [_write_cifar(folder, f"data_batch_{i}", 3, i) for i in range(1, 6)]
    _write_cifar(folder, "test_batch", 4, 9)
    train = load("cifar10", "train", data_dir=str(tmp_path))
    assert train.images.shape == (15, 3, 32, 32)
    first = torch.from_numpy(batches[0][b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.equal(train.images[0], first)
    assert train.labels[:3].tolist() == [int(v) for v in batches[0][b"labels"]]
    assert load("cifar10", "test", data_dir=str(tmp_path), channels=1).images.shape == (4, 1, 32, 32)


def test_cifar10_corrupt_and_malicious(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"garbage that is not a pickle")
    with pytest.raises(DataFormatError, match="not a readable CIFAR-10 batch"):
        load("cifar10", "test", data_dir=str(tmp_path))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataFormatError, match="refusing to load"):
        load("cifar10", "test", data_dir=str(tmp_path))


def test_digits_offline_split_is_disjoint_and_stratified():
    from collections import Counter

    from sklearn.datasets import load_digits

    train, test = load("digits", "train"), load("digits", "test")
    assert len(train) + len(test) == 1797
    assert train.images.shape[1:] == (1, 8, 8) and 0.2 < len(test) / 1797 < 0.3

    def samples(images, labels):  # (pixels, label) of every sample, comparable across scalings
        pixels = (images.reshape(len(labels), -1) / images.max()).round(decimals=6).tolist()
        return Counter((tuple(p), int(y)) for p, y in zip(pixels, labels.tolist()))

    bunch = load_digits()
    full = samples(torch.tensor(bunch.data), torch.tensor(bunch.target))
    # a partition of sklearn's samples: together they are exactly the full set (as a multiset), so none is in both
    assert samples(train.images, train.labels) + samples(test.images, test.labels) == full
    # stratified: every class contributes its share of the test split, to within one sample
    per_class, test_counts = Counter(bunch.target.tolist()), Counter(test.labels.tolist())
    share = len(test) / 1797
    assert all(abs(test_counts[c] - share * n) <= 1 for c, n in per_class.items()), (test_counts, per_class)
    big = load("digits", "test", size=28, channels=3)
    assert big.images.shape == (len(test), 3, 28, 28)


def test_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        load("imagenet")
    with pytest.raises(ValueError, match="split must be"):
        load("digits", "validation")
    with pytest.raises(ValueError, match="data_dir is required"):
        load("mnist")
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load("digits", channels=2)
