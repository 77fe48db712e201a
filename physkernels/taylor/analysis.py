"""Fig. 3 and Fig. 13 of the TaylorNet paper: how the trained quadratic weights depend on pixel distance.

The quadratic terms x_i x_j (i <= j) of a TaylorLinear layer on an H x W image are taken from its weight. Their
values are sorted ascending and split into five equal groups L1..L5 (L5 = largest values):

* Fig. 3, pooled over all output classes: per distance d_ij, the fraction of weights in each level (panel a), and
  per level, the fraction of its weights at each distance (panel b);
* Fig. 13, per class: an n x n map (n = H * W pixels, symmetric) of the level of W[class, x_i x_j] (the same
  value thresholds for every class), plus the count of the class's weights in each level (the insets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


N_LEVELS = 5


@dataclass
class QuadraticWeightStats:
    """Shapes: O = classes, P = n(n+1)/2 quadratic terms, D = distinct distances, n = pixels."""

    pairs: np.ndarray               # (P, 2) pixel indices (i, j), i <= j, in term order
    distance: np.ndarray            # (P,) Euclidean pixel distance d_ij (pixel units)
    weights: np.ndarray             # (O, P) the quadratic weights
    distances: np.ndarray           # (D,) distinct distances, ascending
    level: np.ndarray               # (O, P) level 0..4 (L1..L5), ranked over all classes together
    level_fraction_at_distance: np.ndarray  # (5, D): per distance, share of each level; columns sum to 1 (Fig. 3a)
    distance_fraction_of_level: np.ndarray  # (5, D): per level, share at each distance; rows sum to 1 (Fig. 3b)
    class_maps: np.ndarray          # (O, n, n) symmetric map of `level` per class (Fig. 13)
    class_level_counts: np.ndarray  # (O, 5) weights of each class per level (Fig. 13 insets)

    def as_dict(self) -> dict:
        """JSON-friendly summary (no per-weight arrays)."""
        return {"distances": self.distances.tolist(),
                "level_fraction_at_distance": self.level_fraction_at_distance.tolist(),
                "distance_fraction_of_level": self.distance_fraction_of_level.tolist(),
                "class_level_counts": self.class_level_counts.tolist()}


def _levels(values: np.ndarray) -> np.ndarray:
    """Level 0..4 of each value: rank ascending (stable), split into five equal groups."""
    flat = values.reshape(-1)
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return (ranks * N_LEVELS // flat.size).reshape(values.shape)


def quadratic_weights_by_distance(layer, image_shape: tuple[int, int]) -> QuadraticWeightStats:
    """Fig. 3 statistics and Fig. 13 maps of the quadratic weights of ``layer`` on images of ``image_shape``.

    ``layer`` is a TaylorLinear (order >= 2) or its weight tensor (out_features, n_terms); pixels are numbered
    row-major, so pixel i sits at (i // W, i % W).
    """
    if not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 2
            and all(isinstance(s, int) and s >= 1 for s in image_shape)):
        raise ValueError(f"image_shape must be (height, width) of positive ints, got {image_shape!r}")
    height, width = image_shape
    n = height * width
    weight = layer.weight if hasattr(layer, "weight") else layer
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError("layer must be a TaylorLinear or a 2-D weight tensor (out_features, n_terms)")
    if getattr(layer, "in_features", n) != n:
        raise ValueError(f"image_shape {tuple(image_shape)} has {n} pixels but the layer has "
                         f"in_features={layer.in_features}")
    quadratic_end = n + n * (n + 1) // 2
    if weight.shape[1] < quadratic_end or weight.shape[1] not in {math.comb(n + k, k) - 1 for k in range(2, 9)}:
        raise ValueError(f"weight with {weight.shape[1]} terms is not a Taylor layer of order >= 2 on {n} inputs")
    w = weight.detach().to("cpu", torch.float64).numpy()[:, n:quadratic_end]

    i, j = np.triu_indices(n)  # row-major i <= j: the combinations_with_replacement order
    pairs = np.stack([i, j], axis=1)
    distance = np.hypot(i // width - j // width, i % width - j % width)
    distances, dist_index = np.unique(np.round(distance, 9), return_inverse=True)

    pooled = _levels(w)
    counts = np.zeros((N_LEVELS, len(distances)))
    np.add.at(counts, (pooled.reshape(-1), np.tile(dist_index, w.shape[0])), 1.0)
    at_distance = counts / counts.sum(axis=0, keepdims=True)
    of_level = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)

    maps = np.zeros((w.shape[0], n, n), dtype=np.int64)
    maps[:, i, j] = pooled
    maps[:, j, i] = pooled
    level_counts = np.stack([np.bincount(row, minlength=N_LEVELS) for row in pooled])
    return QuadraticWeightStats(pairs, distance, w, distances, pooled, at_distance, of_level, maps, level_counts)
