"""Image-classification data from standard on-disk formats (nothing is downloaded).

``load(name, split, data_dir=None, size=None, channels=None)`` returns an :class:`ImageSet` with float32 images of
shape ``(N, C, H, W)`` in [0, 1] and int64 labels:

* ``digits``: scikit-learn's bundled 8x8 digits (the offline default), split 75/25 by a fixed stratified shuffle.
* ``mnist``: idx files (``train-images-idx3-ubyte[.gz]`` ...) in ``data_dir``, ``data_dir/MNIST/raw`` or
  ``data_dir/raw`` (torchvision's layout).
* ``cifar10``: the python batches in ``data_dir/cifar-10-batches-py`` (torchvision's layout) or ``data_dir``.

``size`` resizes bilinearly (how 8x8 digits feed 28x28 or 32x32 models, and how the TaylorNet paper makes 7x7
MNIST); ``channels=3`` repeats a grey channel (digits or MNIST into a CIFAR-shaped model).
"""

from .datasets import DATASETS, ImageSet, load
from .formats import DataFormatError, read_cifar10_batch, read_idx

__all__ = ["DATASETS", "DataFormatError", "ImageSet", "load", "read_cifar10_batch", "read_idx"]
