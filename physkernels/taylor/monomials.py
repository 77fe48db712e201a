"""Which Taylor terms exist, in which order, and how the fused kernels walk them.

Terms of degree d are the tuples i1 <= ... <= id of ``combinations_with_replacement(range(n), d)``; all degrees
1..order are concatenated by degree, so there are C(n + order, order) - 1 of them.

Row structure. In that order the last index varies fastest, so the degree-d terms split into consecutive *rows*:
one row per degree-(d-1) prefix (i1..i_{d-1}) (itself a monomial, in the same order), holding the terms
prefix * x_j for j = i_{d-1} .. n-1. Every term is therefore a lower-degree monomial times one x, and a row of
features is ``prefix_value * x[j0:]``. Degree 1 is one row with the empty prefix (value 1) and j0 = 0.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

# Kernels index terms with int32; a larger term count is refused with a clear error.
INDEX_LIMIT = 2**31 - 1

# Columns of the row table.
ROW_OFFSET, ROW_J0, ROW_NPREFIX, ROW_PREFIX = 0, 1, 2, 3


def _positive_int(name: str, value) -> int:
    """``value`` as an int >= 1, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_order(order) -> int:
    """``order`` as an int >= 1, or a TypeError/ValueError naming it."""
    return _positive_int("order", order)


def _check_n(n) -> int:
    return _positive_int("in_features", n)


def monomial_count(n: int, order: int) -> int:
    """Number of Taylor terms of degree 1..order in n variables: C(n + order, order) - 1.

    Raises ValueError when it exceeds :data:`INDEX_LIMIT` (the kernels' int32 term index).
    """
    n, order = _check_n(n), check_order(order)
    count = math.comb(n + order, order) - 1
    if count > INDEX_LIMIT:
        raise ValueError(f"in_features={n}, order={order} gives {count} Taylor terms, more than the int32 term "
                         f"index allows ({INDEX_LIMIT}); lower the order or the number of inputs")
    return count


def monomials(n: int, order: int) -> list[tuple[int, ...]]:
    """All Taylor terms as index tuples, by degree 1..order, each degree in combinations_with_replacement order."""
    monomial_count(n, order)
    return [m for d in range(1, order + 1) for m in itertools.combinations_with_replacement(range(n), d)]


@functools.lru_cache(maxsize=32)
def row_table(n: int, order: int) -> np.ndarray:
    """The rows every fused kernel walks: int32 array (n_rows, 3 + max(order - 1, 1)), read-only.

    Columns: term offset of the row's first term, j0 (first x index of the row: the prefix's last index, 0 for
    degree 1), number of prefix factors (d - 1), then the prefix indices (-1 past d - 1). Row r holds the terms
    ``offset .. offset + n - j0 - 1``, equal to prod(x[prefix]) * x[j] for j = j0 .. n - 1.
    """
    total = monomial_count(n, order)
    width = ROW_PREFIX + max(order - 1, 1)
    rows = [[0, 0, 0] + [-1] * (width - ROW_PREFIX)]
    offset = n
    for d in range(2, order + 1):
        for prefix in itertools.combinations_with_replacement(range(n), d - 1):
            j0 = prefix[-1]
            rows.append([offset, j0, d - 1, *prefix] + [-1] * (width - ROW_PREFIX - (d - 1)))
            offset += n - j0
    assert offset == total
    table = np.asarray(rows, dtype=np.int32)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=32)
def term_rows(n: int, order: int) -> np.ndarray:
    """int32 array (n_terms,): the row (index into :func:`row_table`) that holds each term, read-only."""
    table = row_table(n, order)
    lengths = n - table[:, ROW_J0].astype(np.int64)
    rows = np.repeat(np.arange(len(table), dtype=np.int32), lengths)
    rows.setflags(write=False)
    return rows
