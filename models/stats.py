"""Accuracy over m independent runs, a = mean +- sigma (Eq. 10-11 of the MPO paper)."""

from __future__ import annotations

import math
from typing import Sequence


def mean_sigma(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sigma) with sigma = sqrt(sum (a_i - mean)^2 / (m - 1)) (Eq. 11); sigma = 0 for a single run."""
    m = len(values)
    if m == 0:
        raise ValueError("values must not be empty")
    mean = sum(values) / m
    if m == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((a - mean) ** 2 for a in values) / (m - 1))
